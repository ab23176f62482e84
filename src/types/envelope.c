/*-------------------------------------------------------------------------
 *
 * envelope.c
 *	  Sealing and opening the ciphertext envelope of evector and etext,
 *	  and its text and binary forms.  The layout is in envelope.h.
 *
 * Structural checks (size, format, kind) need no key and run wherever an
 * envelope enters the server, so a restore or COPY of ciphertext works
 * without claims.  Opening needs the owning tenant's claims and its data
 * key, and authenticates header and ciphertext together.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"
#include "libpq/pqformat.h"
#include "port/pg_bswap.h"

#include "claims.h"
#include "envelope.h"
#include "keys.h"
#include "report.h"
#include "vecphi.h"

/* SQL type name of an envelope kind, for messages. */
static const char *
kind_type_name(uint8 kind)
{
	return kind == ENVELOPE_KIND_VECTOR ? "evector" : "etext";
}

/* Plaintext bytes an envelope of this kind and count carries. */
static Size
plaintext_length(uint8 kind, uint32 count)
{
	return kind == ENVELOPE_KIND_VECTOR ? (Size) count * sizeof(float4) : count;
}

/* Write a header: format 2 when binding is given, format 1 otherwise. */
static Size
header_encode(uint8 *p, uint8 kind, uint32 tenant_id, uint32 dek_version,
			  uint32 count, const uint8 *binding)
{
	uint32		be;

	p[0] = binding ? ENVELOPE_FORMAT_V2 : ENVELOPE_FORMAT_V1;
	p[1] = kind;
	p[2] = 0;
	p[3] = 0;
	be = pg_hton32(tenant_id);
	memcpy(p + 4, &be, 4);
	be = pg_hton32(dek_version);
	memcpy(p + 8, &be, 4);
	be = pg_hton32(count);
	memcpy(p + 12, &be, 4);
	if (binding == NULL)
		return ENVELOPE_HEADER_LEN;
	memcpy(p + ENVELOPE_HEADER_LEN, binding, ENVELOPE_BINDING_LEN);
	return ENVELOPE_V2_HEADER_LEN;
}

/* Raise the error for an envelope whose structure is damaged. */
static void
envelope_damaged(uint8 kind, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("%s value is damaged", kind_type_name(kind)),
			 errdetail("%s", detail)));
}

/* What is wrong with a header (decode_header()). */
typedef enum HeaderProblem
{
	HEADER_OK,
	HEADER_SHORT,
	HEADER_FORMAT,
	HEADER_KIND,
	HEADER_RESERVED,
	HEADER_NO_KEY,
	HEADER_COUNT
} HeaderProblem;

/*
 * Decode a header from the first size bytes of an envelope and check its
 * format, kind, reserved bytes, key and count.  Raises and allocates
 * nothing (envelope_peek_header() runs it under a buffer lock).
 */
static HeaderProblem
decode_header(const uint8 *p, Size size, uint8 kind, EnvelopeHeader *hdr)
{
	uint32		be;

	if (size < ENVELOPE_HEADER_LEN)
		return HEADER_SHORT;
	hdr->format = p[0];
	hdr->kind = p[1];
	if (hdr->format != ENVELOPE_FORMAT_V1 && hdr->format != ENVELOPE_FORMAT_V2)
		return HEADER_FORMAT;
	hdr->bound = (hdr->format == ENVELOPE_FORMAT_V2);
	hdr->header_len = hdr->bound ? ENVELOPE_V2_HEADER_LEN : ENVELOPE_HEADER_LEN;
	if (size < hdr->header_len)
		return HEADER_SHORT;
	if (hdr->kind != kind)
		return HEADER_KIND;
	if (p[2] != 0 || p[3] != 0)
		return HEADER_RESERVED;
	memcpy(&be, p + 4, 4);
	hdr->tenant_id = pg_ntoh32(be);
	memcpy(&be, p + 8, 4);
	hdr->dek_version = pg_ntoh32(be);
	memcpy(&be, p + 12, 4);
	hdr->count = pg_ntoh32(be);
	if (hdr->bound)
		memcpy(hdr->binding, p + ENVELOPE_HEADER_LEN, ENVELOPE_BINDING_LEN);
	else
		memset(hdr->binding, 0, ENVELOPE_BINDING_LEN);

	if (hdr->tenant_id == 0 || hdr->dek_version == 0)
		return HEADER_NO_KEY;
	if (kind == ENVELOPE_KIND_VECTOR &&
		(hdr->count < 1 || hdr->count > VECPHI_MAX_DIM))
		return HEADER_COUNT;
	return HEADER_OK;
}

/*
 * Decode and check a header from the first size bytes of an envelope
 * (the whole value, or a slice of at least the header): format, kind,
 * reserved bytes, key and count.  Errors are XX001.
 */
void
envelope_parse_header(const uint8 *p, Size size, uint8 kind,
					  EnvelopeHeader *hdr)
{
	switch (decode_header(p, size, kind, hdr))
	{
		case HEADER_OK:
			break;
		case HEADER_SHORT:
			envelope_damaged(kind, "The envelope is shorter than its fixed header, nonce and tag.");
			break;
		case HEADER_FORMAT:
			envelope_damaged(kind, psprintf("Envelope format %u is not supported.", hdr->format));
			break;
		case HEADER_KIND:
			envelope_damaged(kind, "The envelope holds a value of another type.");
			break;
		case HEADER_RESERVED:
			envelope_damaged(kind, "Reserved header bytes are not zero.");
			break;
		case HEADER_NO_KEY:
			envelope_damaged(kind, "The header names no key.");
			break;
		case HEADER_COUNT:
			envelope_damaged(kind, psprintf("The header claims %u dimensions.", hdr->count));
			break;
	}
}

/*
 * Decode and check the header of a detoasted envelope, and a total size
 * that matches the count.  Errors are XX001.
 */
void
envelope_read_header(const struct varlena *env, uint8 kind,
					 EnvelopeHeader *hdr)
{
	Size		size = VARSIZE_ANY_EXHDR(env);

	if (size < ENVELOPE_OVERHEAD_OF(ENVELOPE_HEADER_LEN))
		envelope_damaged(kind, "The envelope is shorter than its fixed header, nonce and tag.");
	envelope_parse_header((const uint8 *) VARDATA_ANY(env), size, kind, hdr);
	if (size < ENVELOPE_OVERHEAD_OF(hdr->header_len))
		envelope_damaged(kind, "The envelope is shorter than its fixed header, nonce and tag.");
	if (size != ENVELOPE_OVERHEAD_OF(hdr->header_len) +
		plaintext_length(kind, hdr->count))
		envelope_damaged(kind, "The envelope length does not match its header; it is truncated or padded.");
}

/*
 * Encrypt plaintext under a tenant's current data key, bound to a place
 * (binding, ENVELOPE_BINDING_LEN bytes) or unbound (NULL).  The caller
 * has checked that it may write for this tenant.
 */
struct varlena *
envelope_seal_for(uint8 kind, uint32 count, const void *plaintext, Size len,
				  uint32 tenant_id, const uint8 *binding)
{
	DataKey    *dek;
	struct varlena *env;
	Size		hlen = binding ? ENVELOPE_V2_HEADER_LEN : ENVELOPE_HEADER_LEN;
	Size		total = ENVELOPE_OVERHEAD_OF(hlen) + len;
	uint8	   *p;

	Assert(len == plaintext_length(kind, count));
	if (len > ENVELOPE_MAX_PLAINTEXT)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s value is too large to encrypt", kind_type_name(kind)),
				 errdetail("It has %zu bytes; the limit is %zu.",
						   len, (Size) ENVELOPE_MAX_PLAINTEXT)));

	dek = keys_current_dek(tenant_id);
	env = (struct varlena *) palloc(VARHDRSZ + total);
	SET_VARSIZE(env, VARHDRSZ + total);
	p = (uint8 *) VARDATA(env);
	header_encode(p, kind, tenant_id, dek->dek_version, count, binding);
	crypto_random_nonce(p + hlen);
	crypto_aead_seal(dek->aead, p + hlen,
					 p, (int) hlen,
					 plaintext, (int) len,
					 p + hlen + VECPHI_NONCE_LEN,
					 p + hlen + VECPHI_NONCE_LEN + len);
	return env;
}

/* Encrypt plaintext, unbound, under the claimant tenant's current data key. */
struct varlena *
envelope_seal(uint8 kind, uint32 count, const void *plaintext, Size len)
{
	return envelope_seal_for(kind, count, plaintext, len,
							 claims_require_tenant_id(), NULL);
}

/*
 * Decrypt a detoasted envelope whose header was read, with no check of who
 * asks.  Only for the server's own use (index maintenance); everything a
 * user calls goes through envelope_open.  Returns palloc'd plaintext with
 * one spare zero byte after it (so text can be used as a C string); *len
 * gets its length.  The caller should wipe it when done.
 */
void *
envelope_decrypt(const struct varlena *env, uint8 kind,
				 const EnvelopeHeader *hdr, Size *len)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(env);
	DataKey    *dek;
	uint8	   *plaintext;
	Size		ptlen;
	Size		hlen = hdr->header_len;

	dek = keys_get_dek(hdr->tenant_id, hdr->dek_version);
	ptlen = plaintext_length(kind, hdr->count);
	plaintext = palloc(ptlen + 1);
	if (!crypto_aead_open(dek->aead, p + hlen,
						  p, (int) hlen,
						  p + hlen + VECPHI_NONCE_LEN, (int) ptlen,
						  p + hlen + VECPHI_NONCE_LEN + ptlen,
						  plaintext))
		envelope_authentication_failed(kind);
	plaintext[ptlen] = '\0';
	*len = ptlen;
	return plaintext;
}

/*
 * Raise the error of an envelope that failed authentication (recorded as
 * a denial).
 */
void
envelope_authentication_failed(uint8 kind)
{
	vecphi_deny(ERRCODE_DATA_CORRUPTED,
				psprintf("%s value failed authentication", kind_type_name(kind)),
				"ciphertext or header altered, or not sealed under the named key",
				errdetail("The ciphertext or its header was altered, or it was not encrypted under the data key its header names."));
}

/*
 * The checks of envelope_read_header without raising anything, for an
 * envelope of which only avail bytes (its varlena header included) may be
 * read: true, with *hdr filled in, when envelope_read_header would accept
 * it.  Raises nothing and allocates nothing, so it may run under a buffer
 * lock (ehnsw reads elements in place); callers fall back to the raising
 * path on false.
 */
bool
envelope_peek_header(const struct varlena *env, Size avail, uint8 kind,
					 EnvelopeHeader *hdr)
{
	Size		size;

	if (avail < VARHDRSZ || VARATT_IS_EXTENDED(env) || VARSIZE(env) > avail)
		return false;
	size = VARSIZE(env) - VARHDRSZ;
	if (decode_header((const uint8 *) VARDATA(env), size, kind, hdr) != HEADER_OK)
		return false;
	return size == ENVELOPE_OVERHEAD_OF(hdr->header_len) +
		plaintext_length(kind, hdr->count);
}

/*
 * Decrypt an envelope whose header envelope_peek_header (or
 * envelope_read_header) accepted into out (exactly the plaintext's length,
 * no spare byte), under dek, which must be the key the header names.  The
 * server's own use only, as envelope_decrypt.  Returns false, with out
 * wiped, when authentication fails: the caller raises the error with
 * envelope_authentication_failed() once it holds no buffer lock.  Raises
 * nothing itself but an internal error of the library.
 */
bool
envelope_decrypt_with(const struct varlena *env, const EnvelopeHeader *hdr,
					  const struct DataKey *dek, void *out)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(env);
	Size		ptlen = plaintext_length(hdr->kind, hdr->count);
	Size		hlen = hdr->header_len;

	Assert(dek->tenant_id == hdr->tenant_id &&
		   dek->dek_version == hdr->dek_version);
	return crypto_aead_open(dek->aead, p + hlen,
							p, (int) hlen,
							p + hlen + VECPHI_NONCE_LEN, (int) ptlen,
							p + hlen + VECPHI_NONCE_LEN + ptlen,
							out);
}

/* Check that the claimant's tenant owns an envelope; 42501 otherwise. */
void
envelope_check_claimant(const EnvelopeHeader *hdr, uint8 kind)
{
	if (hdr->tenant_id != claims_require_tenant_id())
	{
		char	   *message = psprintf("permission denied to decrypt %s value",
									   kind_type_name(kind));

		vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, message, "another tenant's value",
					errdetail("The value belongs to another tenant than the verified claims."));
	}
}

/*
 * Is the envelope the claimant tenant's?  False without claims.  Reads the
 * authenticated header only: a forged header fails later, at decryption.
 */
bool
envelope_owned_by_claimant(const struct varlena *env, uint8 kind)
{
	EnvelopeHeader hdr;
	const VecphiClaims *claims = claims_current();

	envelope_read_header(env, kind, &hdr);
	if (claims == NULL)
		return false;
	return hdr.tenant_id == claims_require_tenant_id();
}

/* Decrypt a detoasted envelope for the claimant (see envelope_decrypt). */
void *
envelope_open(const struct varlena *env, uint8 kind, EnvelopeHeader *hdr,
			  Size *len)
{
	envelope_read_header(env, kind, hdr);
	envelope_check_claimant(hdr, kind);
	return envelope_decrypt(env, kind, hdr, len);
}

/* Does this input text carry an envelope rather than plaintext? */
bool
envelope_text_is_envelope(const char *str)
{
	return strncmp(str, ENVELOPE_TEXT_PREFIX, ENVELOPE_TEXT_PREFIX_LEN) == 0;
}

/*
 * A well-formed envelope of the other type, given as input, is a user
 * error (22P02), not damage.
 */
static void
check_kind(const struct varlena *env, uint8 kind)
{
	const uint8 *p = (const uint8 *) VARDATA_ANY(env);

	if (VARSIZE_ANY_EXHDR(env) >= 2 &&
		(p[0] == ENVELOPE_FORMAT_V1 || p[0] == ENVELOPE_FORMAT_V2) && p[1] != kind)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s", kind_type_name(kind)),
				 errdetail("The envelope holds a value of another type.")));
}

/*
 * Parse "vecphi:<base64>" and check the envelope's structure.  Sizes are
 * computed in Size: pg_b64_dec_len() multiplies an int by 3 and wraps for
 * input over 715 MB.
 */
struct varlena *
envelope_from_text(const char *str, uint8 kind)
{
	const char *b64 = str + ENVELOPE_TEXT_PREFIX_LEN;
	Size		b64len = strlen(b64);
	Size		cap = b64len / 4 * 3 + 3;
	struct varlena *env;
	int			declen;
	EnvelopeHeader hdr;

	Assert(envelope_text_is_envelope(str));
	if (VARHDRSZ + cap + 1 > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s value is too large", kind_type_name(kind)),
				 errdetail("Its text form has %zu bytes.", b64len)));
	env = (struct varlena *) palloc(VARHDRSZ + cap + 1);
	declen = pg_b64_decode(b64, (int) b64len, VARDATA(env), (int) cap + 1);
	if (declen < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid input syntax for type %s", kind_type_name(kind)),
				 errdetail("Text after \"%s\" is not valid base64.", ENVELOPE_TEXT_PREFIX)));
	SET_VARSIZE(env, VARHDRSZ + declen);

	check_kind(env, kind);
	envelope_read_header(env, kind, &hdr);
	return env;
}

/*
 * "vecphi:<base64>" for a detoasted envelope.  An envelope over 805 MB has
 * no text form within the 1 GB limit (54000; binary output has none);
 * sizes are Size, as pg_b64_enc_len() wraps an int past 512 MB.
 */
char *
envelope_to_text(const struct varlena *env)
{
	Size		size = VARSIZE_ANY_EXHDR(env);
	const uint8 *p = (const uint8 *) VARDATA_ANY(env);
	Size		enclen = (size + 2) / 3 * 4;
	char	   *out;
	int			written;

	if (ENVELOPE_TEXT_PREFIX_LEN + enclen + 1 > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s value is too large for its text form",
						kind_type_name(size >= 2 ? p[1] : ENVELOPE_KIND_TEXT)),
				 errdetail("The envelope has %zu bytes; as base64 text it would have %zu, over the limit of %zu.",
						   size, ENVELOPE_TEXT_PREFIX_LEN + enclen, (Size) MaxAllocSize - 1),
				 errhint("Use binary output (COPY ... WITH (FORMAT binary), or the binary protocol).")));
	out = palloc(ENVELOPE_TEXT_PREFIX_LEN + enclen + 1);
	memcpy(out, ENVELOPE_TEXT_PREFIX, ENVELOPE_TEXT_PREFIX_LEN);
	written = pg_b64_encode((const char *) p, (int) size,
							out + ENVELOPE_TEXT_PREFIX_LEN, (int) enclen);
	if (written < 0)
		elog(ERROR, "could not encode envelope as base64");
	out[ENVELOPE_TEXT_PREFIX_LEN + written] = '\0';
	return out;
}

/*
 * COPY's error context line "COPY t, line 1, column c: \"value\"" with
 * the value cut: for plaintext input the value is the plaintext.
 */
static char *
redact_copy_context(const char *context)
{
	StringInfoData buf;
	const char *line = context;

	initStringInfo(&buf);
	while (*line)
	{
		const char *eol = strchr(line, '\n');
		Size		len = eol ? (Size) (eol - line) : strlen(line);
		const char *quote = NULL;

		if (strncmp(line, "COPY ", 5) == 0)
		{
			quote = strstr(line, ": \"");
			if (quote != NULL && quote >= line + len)
				quote = NULL;
		}
		if (quote != NULL)
		{
			appendBinaryStringInfo(&buf, line, quote - line);
			appendStringInfoString(&buf, ": (value not shown)");
		}
		else
			appendBinaryStringInfo(&buf, line, len);
		if (eol == NULL)
			break;
		appendStringInfoChar(&buf, '\n');
		line = eol + 1;
	}
	return buf.data;
}

/*
 * Re-raise the error being handled (call from PG_CATCH of a type input
 * function, whose input may be plaintext) with any COPY value cut from its
 * context.  cxt is the memory context the input function ran in.
 */
void
envelope_rethrow_input_error(MemoryContext cxt)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	if (edata->context != NULL)
		edata->context = redact_copy_context(edata->context);
	ReThrowError(edata);
}

/*
 * Binary input: the rest of the message is the envelope.  Bytes that are
 * not an envelope at all (a driver sending a float array, pgvector's
 * binary vector) are bad input, 22P03, not damaged data: the message says
 * what to send instead.  A well-formed envelope whose authentication fails
 * is still XX001, where it is decrypted.
 */
struct varlena *
envelope_recv(StringInfo buf, uint8 kind)
{
	int			nbytes = buf->len - buf->cursor;
	struct varlena *env;
	EnvelopeHeader hdr;

	env = (struct varlena *) palloc(VARHDRSZ + nbytes);
	SET_VARSIZE(env, VARHDRSZ + nbytes);
	pq_copymsgbytes(buf, VARDATA(env), nbytes);
	check_kind(env, kind);
	if (!envelope_peek_header(env, VARSIZE(env), kind, &hdr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid binary representation for type %s", kind_type_name(kind)),
				 errdetail("The %d bytes received are not a vecphi envelope.", nbytes),
				 kind == ENVELOPE_KIND_VECTOR ?
				 errhint("Binary input of evector is the ciphertext envelope evector_send() returns; send a query vector as evector_query, or a plaintext vector as text '[1,2,3]' or real[].") :
				 errhint("Binary input of etext is the ciphertext envelope etext_send() returns; send plaintext as text.")));
	return env;
}

/* "tenant/dek_version" of an envelope, for key management and audits. */
char *
envelope_key_id(const struct varlena *env, uint8 kind)
{
	EnvelopeHeader hdr;
	char	   *tenant;

	envelope_read_header(env, kind, &hdr);
	tenant = keys_tenant_name(hdr.tenant_id);
	if (tenant == NULL)
		return psprintf("#%u/%u", hdr.tenant_id, hdr.dek_version);
	return psprintf("%s/%u", tenant, hdr.dek_version);
}
