/*-------------------------------------------------------------------------
 *
 * envelope.h
 *	  The ciphertext envelope shared by evector and etext.
 *
 * On disk and on the wire a value is a varlena:
 *
 *	  header (16 or 32 bytes, big-endian, authenticated as associated data)
 *		  uint8   format		ENVELOPE_FORMAT_V1 (unbound) or _V2 (bound)
 *		  uint8   kind			ENVELOPE_KIND_VECTOR or ENVELOPE_KIND_TEXT
 *		  uint16  reserved		zero
 *		  uint32  tenant_id		owner; selects the keyring
 *		  uint32  dek_version	data key within the tenant's keyring
 *		  uint32  count			dimensions (vector) or bytes (text)
 *		  uint8   binding[16]	V2 only: digest of the value's place
 *	  nonce (12 bytes, random per value)
 *	  ciphertext (4 * count or count bytes)
 *	  tag (16 bytes)
 *
 * The text form is "vecphi:" followed by the base64 of those bytes.  Since
 * the header is authenticated, a value cannot be relabelled to another
 * tenant, key, kind, size or place without failing decryption.  The
 * binding (format 2) is written by the trigger vecphi.protect() installs
 * and checked by the protected table's policies; binding.c explains it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_ENVELOPE_H
#define VECPHI_ENVELOPE_H

#include "lib/stringinfo.h"
#include "port/pg_bswap.h"
#include "utils/memutils.h"

#include "crypto.h"

#define ENVELOPE_FORMAT_V1		1
#define ENVELOPE_FORMAT_V2		2
#define ENVELOPE_KIND_VECTOR	1
#define ENVELOPE_KIND_TEXT		2

#define ENVELOPE_HEADER_LEN		16	/* format 1 */
#define ENVELOPE_BINDING_LEN	16	/* SHA-256 of the place, truncated */
#define ENVELOPE_V2_HEADER_LEN	(ENVELOPE_HEADER_LEN + ENVELOPE_BINDING_LEN)
/* Fixed bytes of an envelope: header, nonce and tag. */
#define ENVELOPE_OVERHEAD_OF(header_len) \
	((header_len) + VECPHI_NONCE_LEN + VECPHI_TAG_LEN)
/* The largest (bound) overhead, for size limits. */
#define ENVELOPE_OVERHEAD		ENVELOPE_OVERHEAD_OF(ENVELOPE_V2_HEADER_LEN)
#define ENVELOPE_TEXT_PREFIX	"vecphi:"
#define ENVELOPE_TEXT_PREFIX_LEN (sizeof(ENVELOPE_TEXT_PREFIX) - 1)

/* Largest plaintext an envelope may carry, so the whole fits a varlena. */
#define ENVELOPE_MAX_PLAINTEXT \
	(MaxAllocSize - VARHDRSZ - ENVELOPE_OVERHEAD)

/* The header, decoded. */
typedef struct EnvelopeHeader
{
	uint8		format;
	uint8		kind;
	uint32		tenant_id;
	uint32		dek_version;
	uint32		count;
	Size		header_len;		/* 16 (unbound) or 32 (bound) */
	bool		bound;			/* format 2: binding is valid */
	uint8		binding[ENVELOPE_BINDING_LEN];
} EnvelopeHeader;

extern struct varlena *envelope_seal(uint8 kind, uint32 count,
									 const void *plaintext, Size len);
extern struct varlena *envelope_seal_for(uint8 kind, uint32 count,
										 const void *plaintext, Size len,
										 uint32 tenant_id,
										 const uint8 *binding);
extern void envelope_parse_header(const uint8 *p, Size size, uint8 kind,
								  EnvelopeHeader *hdr);
extern void *envelope_open(const struct varlena *env, uint8 kind,
						   EnvelopeHeader *hdr, Size *len);
extern void *envelope_decrypt(const struct varlena *env, uint8 kind,
							  const EnvelopeHeader *hdr, Size *len);
extern void envelope_authentication_failed(uint8 kind) pg_attribute_noreturn();
extern bool envelope_peek_header(const struct varlena *env, Size avail,
								 uint8 kind, EnvelopeHeader *hdr);
struct DataKey;
extern bool envelope_decrypt_with(const struct varlena *env,
								  const EnvelopeHeader *hdr,
								  const struct DataKey *dek, void *out);
extern void envelope_check_claimant(const EnvelopeHeader *hdr, uint8 kind);
extern bool envelope_owned_by_claimant(const struct varlena *env, uint8 kind);
extern void envelope_read_header(const struct varlena *env, uint8 kind,
								 EnvelopeHeader *hdr);
extern bool envelope_text_is_envelope(const char *str);
extern struct varlena *envelope_from_text(const char *str, uint8 kind);
extern char *envelope_to_text(const struct varlena *env);
extern void envelope_rethrow_input_error(MemoryContext cxt) pg_attribute_noreturn();
extern struct varlena *envelope_recv(StringInfo buf, uint8 kind);
extern char *envelope_key_id(const struct varlena *env, uint8 kind);

/*
 * Convert between an evector envelope's little-endian floats and host
 * floats, in place (the same swap both ways; nothing on little-endian).
 */
static inline void
envelope_floats_to_le(float4 *x, uint32 n)
{
#ifdef WORDS_BIGENDIAN
	uint32	   *w = (uint32 *) x;
	uint32		i;

	for (i = 0; i < n; i++)
		w[i] = pg_bswap32(w[i]);
#endif
}
#define envelope_floats_from_le envelope_floats_to_le

#endif							/* VECPHI_ENVELOPE_H */
