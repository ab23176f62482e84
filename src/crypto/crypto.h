/*-------------------------------------------------------------------------
 *
 * crypto.h
 *	  The cryptographic primitives vecphi uses, behind an interface that
 *	  keeps OpenSSL out of every other file.
 *
 * Only FIPS-approved algorithms: AES-256-GCM for data, AES-256 key wrap
 * with padding (RFC 5649) for data keys, HMAC-SHA-256, ECDSA P-256 and
 * RSA PKCS#1 v1.5 with SHA-256 for claim tokens, and the DRBG behind
 * RAND_bytes for keys and nonces.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_CRYPTO_H
#define VECPHI_CRYPTO_H

#define VECPHI_KEY_LEN		32	/* AES-256 */
#define VECPHI_NONCE_LEN	12	/* GCM's 96-bit IV */
#define VECPHI_TAG_LEN		16	/* full-length GCM tag */
#define VECPHI_WRAPPED_KEY_LEN	40	/* RFC 5649 wrap of a 32-byte key */
#define VECPHI_HMAC_LEN		32	/* HMAC-SHA-256 */

/* An AES-256-GCM key, scheduled once and reused for many values. */
typedef struct VecphiAead VecphiAead;

extern void crypto_random_bytes(uint8 *buf, size_t len);
extern void crypto_random_nonce(uint8 *nonce);

extern VecphiAead *crypto_aead_create(const uint8 *key);
extern void crypto_aead_destroy(VecphiAead *aead);
extern void crypto_aead_seal(VecphiAead *aead, const uint8 *nonce,
							 const uint8 *aad, int aadlen,
							 const uint8 *plaintext, int len,
							 uint8 *ciphertext, uint8 *tag);
extern bool crypto_aead_open(VecphiAead *aead, const uint8 *nonce,
							 const uint8 *aad, int aadlen,
							 const uint8 *ciphertext, int len,
							 const uint8 *tag, uint8 *plaintext);

extern void crypto_wrap_key(const uint8 *kek, const uint8 *key,
							uint8 *wrapped);
extern bool crypto_unwrap_key(const uint8 *kek, const uint8 *wrapped,
							  int wrappedlen, uint8 *key);

extern void crypto_hmac_sha256(const uint8 *key, size_t keylen,
							   const uint8 *data, size_t len, uint8 *mac);
extern void crypto_sha256(const uint8 *data, size_t len, uint8 *digest);
typedef enum CryptoSignatureResult
{
	CRYPTO_SIG_OK,
	CRYPTO_SIG_BAD,
	CRYPTO_SIG_WRONG_KEY
}			CryptoSignatureResult;

extern CryptoSignatureResult crypto_verify_signature(const char *alg,
													 const char *pem, size_t pemlen,
													 const uint8 *data, size_t len,
													 const uint8 *sig, size_t siglen);
extern bool crypto_equal(const void *a, const void *b, size_t len);
extern void crypto_wipe(void *ptr, size_t len);

#endif							/* VECPHI_CRYPTO_H */
