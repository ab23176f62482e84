/*-------------------------------------------------------------------------
 *
 * envelope.h
 *	  The ciphertext envelope shared by evector and etext.
 *
 * On disk and on the wire a value is a varlena:
 *
 *	  header (16 bytes, big-endian, authenticated as associated data)
 *		  uint8   format		ENVELOPE_FORMAT_V1
 *		  uint8   kind			ENVELOPE_KIND_VECTOR or ENVELOPE_KIND_TEXT
 *		  uint16  reserved		zero
 *		  uint32  tenant_id		owner; selects the keyring
 *		  uint32  dek_version	data key within the tenant's keyring
 *		  uint32  count			dimensions (vector) or bytes (text)
 *	  nonce (12 bytes, random per value)
 *	  ciphertext (4 * count or count bytes)
 *	  tag (16 bytes)
 *
 * The text form is "vecphi:" followed by the base64 of those bytes.  Since
 * the header is authenticated, a value cannot be relabelled to another
 * tenant, key, kind or size without failing decryption.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_ENVELOPE_H
#define VECPHI_ENVELOPE_H

#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "crypto.h"

#define ENVELOPE_FORMAT_V1		1
#define ENVELOPE_KIND_VECTOR	1
#define ENVELOPE_KIND_TEXT		2

#define ENVELOPE_HEADER_LEN		16
#define ENVELOPE_OVERHEAD \
	(ENVELOPE_HEADER_LEN + VECPHI_NONCE_LEN + VECPHI_TAG_LEN)
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
} EnvelopeHeader;

extern struct varlena *envelope_seal(uint8 kind, uint32 count,
									 const void *plaintext, Size len);
extern void *envelope_open(const struct varlena *env, uint8 kind,
						   EnvelopeHeader *hdr, Size *len);
extern void *envelope_decrypt(const struct varlena *env, uint8 kind,
							  const EnvelopeHeader *hdr, Size *len);
extern void envelope_check_claimant(const EnvelopeHeader *hdr, uint8 kind);
extern bool envelope_owned_by_claimant(const struct varlena *env, uint8 kind);
extern void envelope_read_header(const struct varlena *env, uint8 kind,
								 EnvelopeHeader *hdr);
extern bool envelope_text_is_envelope(const char *str);
extern struct varlena *envelope_from_text(const char *str, uint8 kind);
extern char *envelope_to_text(const struct varlena *env);
extern struct varlena *envelope_recv(StringInfo buf, uint8 kind);
extern char *envelope_key_id(const struct varlena *env, uint8 kind);

#endif							/* VECPHI_ENVELOPE_H */
