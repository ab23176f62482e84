/*-------------------------------------------------------------------------
 *
 * crypto.c
 *	  AES-256-GCM, AES key wrap, HMAC-SHA-256 and random bytes through
 *	  OpenSSL's EVP interface.  The only file of vecphi that includes
 *	  OpenSSL headers.
 *
 * Every EVP call is checked.  A failure other than an authentication
 * failure means the library or the machine is broken, so it is reported
 * as an internal error; authentication failures are returned to the
 * caller, which knows what the value was and reports XX001.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "crypto.h"

struct VecphiAead
{
	EVP_CIPHER_CTX *encrypt;
	EVP_CIPHER_CTX *decrypt;
};

/* Report the OpenSSL error queue as an internal error; never returns. */
static void
crypto_fail(const char *what)
{
	unsigned long code = ERR_get_error();
	char		buf[256];

	if (code != 0)
		ERR_error_string_n(code, buf, sizeof(buf));
	else
		strlcpy(buf, "no error reported", sizeof(buf));
	ERR_clear_error();
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("cryptographic operation failed: %s", what),
			 errdetail("OpenSSL: %s.", buf)));
}

/*
 * Nonces come from a per-process pool refilled from the DRBG 4 kB at a
 * time: a RAND_bytes call costs about 2 microseconds whatever its size,
 * three quarters of encrypting a 128-dimension vector.  The pool belongs to
 * the process that filled it; a forked child (every backend and parallel
 * worker is one) never uses its parent's bytes, so no two processes can
 * hand out the same nonce.
 */
#define NONCE_POOL_SIZE 4096

static uint8 nonce_pool[NONCE_POOL_SIZE];
static int	nonce_pool_used = NONCE_POOL_SIZE;
static pid_t nonce_pool_pid = 0;

/* A fresh 96-bit random nonce for AES-256-GCM. */
void
crypto_random_nonce(uint8 *nonce)
{
	if (nonce_pool_pid != getpid() ||
		nonce_pool_used + VECPHI_NONCE_LEN > NONCE_POOL_SIZE)
	{
		crypto_random_bytes(nonce_pool, NONCE_POOL_SIZE);
		nonce_pool_used = 0;
		nonce_pool_pid = getpid();
	}
	memcpy(nonce, nonce_pool + nonce_pool_used, VECPHI_NONCE_LEN);
	/* Handed out once: forget it, so it cannot be handed out again. */
	memset(nonce_pool + nonce_pool_used, 0, VECPHI_NONCE_LEN);
	nonce_pool_used += VECPHI_NONCE_LEN;
}

/* Fill buf with bytes from OpenSSL's DRBG. */
void
crypto_random_bytes(uint8 *buf, size_t len)
{
	if (RAND_bytes(buf, (int) len) != 1)
		crypto_fail("random number generation");
}

/* Schedule an AES-256-GCM key for both directions. */
VecphiAead *
crypto_aead_create(const uint8 *key)
{
	VecphiAead *aead;

	aead = OPENSSL_zalloc(sizeof(VecphiAead));
	if (aead == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	aead->encrypt = EVP_CIPHER_CTX_new();
	aead->decrypt = EVP_CIPHER_CTX_new();
	if (aead->encrypt == NULL || aead->decrypt == NULL ||
		EVP_EncryptInit_ex(aead->encrypt, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
		EVP_DecryptInit_ex(aead->decrypt, EVP_aes_256_gcm(), NULL, key, NULL) != 1)
	{
		crypto_aead_destroy(aead);
		crypto_fail("AES-256-GCM key setup");
	}
	return aead;
}

/* Free a scheduled key; OpenSSL cleanses the key schedule on free. */
void
crypto_aead_destroy(VecphiAead *aead)
{
	if (aead == NULL)
		return;
	EVP_CIPHER_CTX_free(aead->encrypt);
	EVP_CIPHER_CTX_free(aead->decrypt);
	OPENSSL_clear_free(aead, sizeof(VecphiAead));
}

/* Encrypt len bytes with a fresh nonce; aad is authenticated, not hidden. */
void
crypto_aead_seal(VecphiAead *aead, const uint8 *nonce,
				 const uint8 *aad, int aadlen,
				 const uint8 *plaintext, int len,
				 uint8 *ciphertext, uint8 *tag)
{
	EVP_CIPHER_CTX *ctx = aead->encrypt;
	int			outlen;

	if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
		EVP_EncryptUpdate(ctx, NULL, &outlen, aad, aadlen) != 1 ||
		(len > 0 &&
		 EVP_EncryptUpdate(ctx, ciphertext, &outlen, plaintext, len) != 1) ||
		EVP_EncryptFinal_ex(ctx, ciphertext + (len > 0 ? outlen : 0), &outlen) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, VECPHI_TAG_LEN, tag) != 1)
		crypto_fail("AES-256-GCM encryption");
}

/*
 * Decrypt and authenticate.  Returns false, with the plaintext buffer
 * wiped, when the tag does not match (tampered data or wrong key).
 */
bool
crypto_aead_open(VecphiAead *aead, const uint8 *nonce,
				 const uint8 *aad, int aadlen,
				 const uint8 *ciphertext, int len,
				 const uint8 *tag, uint8 *plaintext)
{
	EVP_CIPHER_CTX *ctx = aead->decrypt;
	int			outlen = 0;
	int			finallen;

	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
		EVP_DecryptUpdate(ctx, NULL, &outlen, aad, aadlen) != 1 ||
		(len > 0 &&
		 EVP_DecryptUpdate(ctx, plaintext, &outlen, ciphertext, len) != 1) ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, VECPHI_TAG_LEN,
							unconstify(uint8 *, tag)) != 1)
		crypto_fail("AES-256-GCM decryption");

	if (EVP_DecryptFinal_ex(ctx, plaintext + (len > 0 ? outlen : 0), &finallen) != 1)
	{
		ERR_clear_error();
		if (len > 0)
			OPENSSL_cleanse(plaintext, len);
		return false;
	}
	return true;
}

/* Wrap a 32-byte data key under a KEK (AES-256 key wrap with padding). */
void
crypto_wrap_key(const uint8 *kek, const uint8 *key, uint8 *wrapped)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int			len1 = 0;
	int			len2 = 0;
	bool		ok;

	if (ctx == NULL)
		crypto_fail("key wrap setup");
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_wrap_pad(), NULL, kek, NULL) == 1 &&
		EVP_EncryptUpdate(ctx, wrapped, &len1, key, VECPHI_KEY_LEN) == 1 &&
		EVP_EncryptFinal_ex(ctx, wrapped + len1, &len2) == 1 &&
		len1 + len2 == VECPHI_WRAPPED_KEY_LEN;
	EVP_CIPHER_CTX_free(ctx);
	if (!ok)
		crypto_fail("key wrap");
}

/*
 * Unwrap a data key.  Returns false when the wrapped key fails its
 * integrity check, which is what a wrong KEK looks like.
 */
bool
crypto_unwrap_key(const uint8 *kek, const uint8 *wrapped, int wrappedlen,
				  uint8 *key)
{
	EVP_CIPHER_CTX *ctx;
	uint8		buf[VECPHI_WRAPPED_KEY_LEN + 16];
	int			len1 = 0;
	int			len2 = 0;
	bool		ok;

	if (wrappedlen != VECPHI_WRAPPED_KEY_LEN)
		return false;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL)
		crypto_fail("key unwrap setup");
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_wrap_pad(), NULL, kek, NULL) != 1)
	{
		EVP_CIPHER_CTX_free(ctx);
		crypto_fail("key unwrap setup");
	}
	ok = EVP_DecryptUpdate(ctx, buf, &len1, wrapped, wrappedlen) == 1 &&
		EVP_DecryptFinal_ex(ctx, buf + len1, &len2) == 1 &&
		len1 + len2 == VECPHI_KEY_LEN;
	EVP_CIPHER_CTX_free(ctx);
	ERR_clear_error();
	if (ok)
		memcpy(key, buf, VECPHI_KEY_LEN);
	OPENSSL_cleanse(buf, sizeof(buf));
	return ok;
}

/* HMAC-SHA-256 of data under key. */
void
crypto_hmac_sha256(const uint8 *key, size_t keylen,
				   const uint8 *data, size_t len, uint8 *mac)
{
	unsigned int maclen = 0;

	if (HMAC(EVP_sha256(), key, (int) keylen, data, len, mac, &maclen) == NULL ||
		maclen != VECPHI_HMAC_LEN)
		crypto_fail("HMAC-SHA-256");
}

/* SHA-256 of a buffer (the audit's fingerprint of a query vector). */
void
crypto_sha256(const uint8 *data, size_t len, uint8 *digest)
{
	unsigned int dlen = 0;

	if (EVP_Digest(data, len, digest, &dlen, EVP_sha256(), NULL) != 1 ||
		dlen != VECPHI_HMAC_LEN)
		crypto_fail("SHA-256");
}

/*
 * Verify a JWT signature made with a public-key algorithm: ES256 (ECDSA
 * P-256 with SHA-256, signature as JWS's raw 64-byte r || s) or RS256
 * (RSASSA-PKCS1-v1_5 with SHA-256).  pem holds the verifying public key.
 * Returns CRYPTO_SIG_OK, CRYPTO_SIG_BAD (signature does not verify), or
 * CRYPTO_SIG_WRONG_KEY (the key is not of the algorithm's type, so the
 * token must not be accepted under it).  A key that cannot be read at all
 * is an error.
 */
CryptoSignatureResult
crypto_verify_signature(const char *alg, const char *pem, size_t pemlen,
						const uint8 *data, size_t len,
						const uint8 *sig, size_t siglen)
{
	BIO		   *bio;
	EVP_PKEY   *pkey;
	EVP_MD_CTX *md = NULL;
	unsigned char *der = NULL;
	const unsigned char *check_sig = sig;
	size_t		check_len = siglen;
	CryptoSignatureResult result = CRYPTO_SIG_BAD;
	bool		es256 = strcmp(alg, "ES256") == 0;

	bio = BIO_new_mem_buf(pem, (int) pemlen);
	if (bio == NULL)
		crypto_fail("reading the public key");
	pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (pkey == NULL)
	{
		ERR_clear_error();
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("vecphi.jwt_public_key_file does not hold a PEM public key")));
	}

	if (es256)
	{
		char		group[64];
		size_t		glen = 0;

		if (!EVP_PKEY_is_a(pkey, "EC") ||
			EVP_PKEY_get_utf8_string_param(pkey, "group", group, sizeof(group), &glen) != 1 ||
			strcmp(group, "prime256v1") != 0)
			result = CRYPTO_SIG_WRONG_KEY;
		else if (siglen == 64)
		{
			/* JWS carries r || s; OpenSSL wants a DER ECDSA-Sig-Value. */
			ECDSA_SIG  *esig = ECDSA_SIG_new();
			BIGNUM	   *r = BN_bin2bn(sig, 32, NULL);
			BIGNUM	   *s = BN_bin2bn(sig + 32, 32, NULL);
			int			derlen;

			if (esig == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(esig, r, s) != 1)
			{
				BN_free(r);
				BN_free(s);
				ECDSA_SIG_free(esig);
				EVP_PKEY_free(pkey);
				crypto_fail("decoding an ECDSA signature");
			}
			derlen = i2d_ECDSA_SIG(esig, &der);
			ECDSA_SIG_free(esig);
			if (derlen > 0)
			{
				check_sig = der;
				check_len = (size_t) derlen;
				result = CRYPTO_SIG_OK; /* provisional: verified below */
			}
		}
	}
	else
	{
		if (!EVP_PKEY_is_a(pkey, "RSA") || EVP_PKEY_get_bits(pkey) < 2048)
			result = CRYPTO_SIG_WRONG_KEY;
		else
			result = CRYPTO_SIG_OK; /* provisional: verified below */
	}

	if (result == CRYPTO_SIG_OK)
	{
		md = EVP_MD_CTX_new();
		if (md == NULL ||
			EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
			EVP_DigestVerify(md, check_sig, check_len, data, len) != 1)
			result = CRYPTO_SIG_BAD;
	}
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	EVP_PKEY_free(pkey);
	return result;
}

/* Compare in time that does not depend on where the inputs differ. */
bool
crypto_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

/*
 * Overwrite secret bytes in a way the compiler may not optimise away.
 * explicit_bzero (libc, or src/port) is a full-speed memset;
 * OPENSSL_cleanse writes byte by byte, which showed in search profiles.
 */
void
crypto_wipe(void *ptr, size_t len)
{
	if (ptr != NULL && len > 0)
		explicit_bzero(ptr, len);
}
