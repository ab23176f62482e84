/*-------------------------------------------------------------------------
 *
 * etext.c
 *	  The etext type: the chunk text stored beside an embedding, in the
 *	  same envelope and under the same data keys as evector.
 *
 * Input text that starts with "vecphi:" is read as an envelope (so dumps
 * and COPY round-trip); any other text is encrypted.  vecphi.encrypt(text)
 * always encrypts, for text that happens to start with that prefix.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "crypto.h"
#include "envelope.h"
#include "report.h"

#define PG_GETARG_ETEXT_P(n) ((struct varlena *) PG_DETOAST_DATUM(PG_GETARG_DATUM(n)))

/* Encrypt len bytes of text. */
static struct varlena *
seal_text(const char *str, Size len)
{
	if (len > PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("etext value is too large to encrypt")));
	return envelope_seal(ENVELOPE_KIND_TEXT, (uint32) len, str, len);
}

PG_FUNCTION_INFO_V1(etext_in);
Datum
etext_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	MemoryContext cxt = CurrentMemoryContext;
	struct varlena *env = NULL;

	/*
	 * str is plaintext, or an envelope, or plaintext that only looks like
	 * one: no error may show it (COPY's context would).
	 */
	PG_TRY();
	{
		if (envelope_text_is_envelope(str))
			env = envelope_from_text(str, ENVELOPE_KIND_TEXT);
		else
			env = seal_text(str, strlen(str));
	}
	PG_CATCH();
	{
		envelope_rethrow_input_error(cxt);
	}
	PG_END_TRY();
	PG_RETURN_POINTER(env);
}

PG_FUNCTION_INFO_V1(etext_out);
Datum
etext_out(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(envelope_to_text(PG_GETARG_ETEXT_P(0)));
}

PG_FUNCTION_INFO_V1(etext_recv);
Datum
etext_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);

	PG_RETURN_POINTER(envelope_recv(buf, ENVELOPE_KIND_TEXT));
}

PG_FUNCTION_INFO_V1(etext_send);
Datum
etext_send(PG_FUNCTION_ARGS)
{
	struct varlena *env = PG_GETARG_ETEXT_P(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(env), VARSIZE_ANY_EXHDR(env));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

PG_FUNCTION_INFO_V1(vecphi_encrypt_text);
Datum
vecphi_encrypt_text(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_POINTER(seal_text(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}

PG_FUNCTION_INFO_V1(vecphi_decrypt_text);
Datum
vecphi_decrypt_text(PG_FUNCTION_ARGS)
{
	EnvelopeHeader hdr;
	Size		len;
	char	   *plaintext;
	text	   *result;

	plaintext = envelope_open(PG_GETARG_ETEXT_P(0), ENVELOPE_KIND_TEXT, &hdr, &len);
	report_decrypt(true);

	/*
	 * Text sealed in a database of another encoding (a restore from LATIN1 or
	 * SQL_ASCII) may not be valid here.  The core's message would show the
	 * offending bytes, which are plaintext: check quietly, wipe, and say only
	 * that it is invalid.
	 */
	if (!pg_verifymbstr(plaintext, (int) len, true))
	{
		crypto_wipe(plaintext, len);
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("etext value is not valid text in encoding \"%s\"",
						GetDatabaseEncodingName()),
				 errdetail("It was encrypted in a database of another encoding, or contains a zero byte; its bytes are not shown.")));
	}
	result = cstring_to_text_with_len(plaintext, (int) len);
	crypto_wipe(plaintext, len);
	PG_RETURN_TEXT_P(result);
}

PG_FUNCTION_INFO_V1(etext_owned_by_claimant);
Datum
etext_owned_by_claimant(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(envelope_owned_by_claimant(PG_GETARG_ETEXT_P(0),
											  ENVELOPE_KIND_TEXT));
}

PG_FUNCTION_INFO_V1(etext_key_id);
Datum
etext_key_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(envelope_key_id(PG_GETARG_ETEXT_P(0),
													 ENVELOPE_KIND_TEXT)));
}
