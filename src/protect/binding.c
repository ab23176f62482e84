/*-------------------------------------------------------------------------
 *
 * binding.c
 *	  Ciphertext bound to its place (issue #11, section 4).
 *
 * GCM authenticates an envelope's header with its ciphertext, but nothing
 * in a type's input, output or distance function knows which row a value
 * came from, so copying row 1's ciphertext over row 2 of the same tenant
 * used to go unnoticed.  A value in a protected table now carries, in its
 * authenticated header (envelope format 2), a binding digest:
 *
 *	  SHA-256("vecphi binding 1" | label | column | key)[0..16)
 *
 * every part length-prefixed, where
 *	  label   vecphi.protected_tables.binding_label of the table (or of its
 *			  top-most protected ancestor): the qualified name at protect()
 *			  time, never changed afterwards, carried by pg_dump
 *	  column  the column's label: its name at protect() time, kept across
 *			  RENAME COLUMN by the utility hook below
 *	  key	  the primary key's values, in order: the raw bytes of text-like
 *			  types, the binary send form of every other type (so neither
 *			  DateStyle, TimeZone nor extra_float_digits changes it); empty
 *			  for a table without a primary key (table and column only)
 *
 * Writing: protect() installs vecphi.bind_row() as an ENABLE ALWAYS BEFORE
 * INSERT OR UPDATE row trigger.  A value already bound to exactly its new
 * place passes untouched (restore, COPY, logical replication apply need no
 * claims); an unbound value or one bound elsewhere is decrypted under the
 * writer's claims and re-sealed, bound; without the claims of its tenant
 * the write is refused (42501, with a denial record).
 *
 * Reading: protect()'s SELECT, UPDATE and DELETE policies end with
 * vecphi.row_bound(tbl.*), which reads only the headers (a slice of each
 * value, no decryption, no key) and raises XX001 with a denial record when
 * a value is unbound or bound elsewhere.  A forged header fails GCM
 * authentication at decryption.
 *
 * Migration: vecphi.bind_existing(tbl), for the security officer or the key
 * administrator, binds the unbound values already in a protected table to
 * the rows they are in, with the keyring directly; it refuses values bound
 * elsewhere (binding those would launder a moved value).
 *
 * The catalog (vecphi.protected_tables), its writes and the RENAME COLUMN
 * hook are in bindingcatalog.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/parallel.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "audit.h"
#include "binding.h"
#include "bindingint.h"
#include "ciphertypes.h"
#include "claims.h"
#include "crypto.h"
#include "envelope.h"
#include "report.h"


#define BINDING_DOMAIN_TAG	"vecphi binding 1"

/* One evector or etext column of a relation, and its label. */
typedef struct BindingColumn
{
	AttrNumber	attnum;
	uint8		kind;			/* ENVELOPE_KIND_VECTOR or _TEXT */
	char	   *name;			/* current name, for messages */
	char	   *label;			/* label that goes into the digest */
} BindingColumn;

/* One primary key column. */
typedef struct BindingKey
{
	AttrNumber	attnum;
	bool		raw;			/* text-like: hash its bytes */
	Oid			sendfn;
} BindingKey;

/* What a relation's values are bound to; built once per query. */
typedef struct BindingRel
{
	Oid			relid;			/* relation whose rows these are */
	Oid			typid;			/* its row type */
	char	   *relname;		/* qualified, for messages */
	char	   *label;
	int			ncolumns;
	BindingColumn *columns;
	int			nkeys;
	BindingKey *keys;
	FmgrInfo   *sendfns;
} BindingRel;


/*
 * Build what the values of relid (row descriptor desc) are bound to, in
 * memory context cxt.  Errors when the table is not registered.
 */
static BindingRel *
binding_rel_build(Oid relid, TupleDesc desc, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	BindingRel *br = palloc0(sizeof(BindingRel));
	BindingEntry entry;
	Oid			evector;
	Oid			etext;
	Relation	rel;
	Oid			pkoid;

	br->relid = relid;
	br->typid = get_rel_type_id(relid);
	br->relname = binding_relname(relid);
	if (!binding_lookup(relid, &entry))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s has no ciphertext binding", br->relname),
				 errdetail("It is not registered in vecphi.protected_tables."),
				 errhint("Call vecphi.protect() on the table.")));
	br->label = entry.label;

	vecphi_ciphertext_types(&evector, &etext);
	br->columns = palloc0(sizeof(BindingColumn) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		uint8		kind;
		BindingColumn *col;

		if (att->attisdropped)
			continue;
		kind = ciphertext_type_kind(att->atttypid, evector, etext);
		if (kind == 0)
			continue;
		col = &br->columns[br->ncolumns++];
		col->attnum = att->attnum;
		col->kind = kind;
		col->name = pstrdup(NameStr(att->attname));
		col->label = col->name;
		for (int j = 0; j < entry.nnames; j++)
			if (strcmp(entry.names[j], col->name) == 0)
				col->label = entry.labels[j];
	}

	rel = table_open(relid, AccessShareLock);
	pkoid = RelationGetPrimaryKeyIndex(rel);
	table_close(rel, AccessShareLock);
	if (OidIsValid(pkoid))
	{
		HeapTuple	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pkoid));
		Form_pg_index idx;

		if (!HeapTupleIsValid(itup))
			elog(ERROR, "cache lookup failed for index %u", pkoid);
		idx = (Form_pg_index) GETSTRUCT(itup);
		br->nkeys = idx->indnkeyatts;
		br->keys = palloc0(sizeof(BindingKey) * br->nkeys);
		br->sendfns = palloc0(sizeof(FmgrInfo) * br->nkeys);
		for (int k = 0; k < br->nkeys; k++)
		{
			/* desc is relid's own row descriptor: same attribute numbers. */
			AttrNumber	attnum = idx->indkey.values[k];
			Oid			keytype;
			bool		isvarlena;

			br->keys[k].attnum = attnum;
			keytype = getBaseType(TupleDescAttr(desc, attnum - 1)->atttypid);
			br->keys[k].raw = (keytype == TEXTOID || keytype == VARCHAROID ||
							   keytype == BPCHAROID || keytype == NAMEOID);
			if (!br->keys[k].raw)
			{
				getTypeBinaryOutputInfo(keytype, &br->keys[k].sendfn, &isvarlena);
				fmgr_info_cxt(br->keys[k].sendfn, &br->sendfns[k], cxt);
			}
		}
		ReleaseSysCache(itup);
	}
	MemoryContextSwitchTo(old);
	return br;
}

/* Append a length-prefixed byte string to buf. */
static void
append_part(StringInfo buf, const void *data, uint32 len)
{
	uint32		be = pg_hton32(len);

	appendBinaryStringInfo(buf, (const char *) &be, 4);
	appendBinaryStringInfo(buf, data, len);
}

/* The row-key part of the digest input for one row. */
static void
row_key_bytes(BindingRel *br, HeapTuple tuple, TupleDesc desc, StringInfo buf)
{
	uint32		be = pg_hton32((uint32) br->nkeys);

	appendBinaryStringInfo(buf, (const char *) &be, 4);
	for (int k = 0; k < br->nkeys; k++)
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, br->keys[k].attnum, desc, &isnull);

		if (isnull)
		{
			/* Impossible under a primary key; mark it distinctly. */
			be = pg_hton32(PG_UINT32_MAX);
			appendBinaryStringInfo(buf, (const char *) &be, 4);
			continue;
		}
		if (br->keys[k].raw)
		{
			Oid			keytype = getBaseType(TupleDescAttr(desc, br->keys[k].attnum - 1)->atttypid);

			if (keytype == NAMEOID)
				append_part(buf, NameStr(*DatumGetName(d)),
							strlen(NameStr(*DatumGetName(d))));
			else
			{
				text	   *t = DatumGetTextPP(d);

				append_part(buf, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
		}
		else
		{
			bytea	   *b = SendFunctionCall(&br->sendfns[k], d);

			append_part(buf, VARDATA(b), VARSIZE(b) - VARHDRSZ);
		}
	}
}

/* The binding digest of one column of a row whose key bytes are given. */
static void
binding_digest(BindingRel *br, BindingColumn *col, StringInfo key,
			   uint8 *digest)
{
	StringInfoData buf;
	uint8		full[32];

	initStringInfo(&buf);
	append_part(&buf, BINDING_DOMAIN_TAG, strlen(BINDING_DOMAIN_TAG));
	append_part(&buf, br->label, strlen(br->label));
	append_part(&buf, col->label, strlen(col->label));
	appendBinaryStringInfo(&buf, key->data, key->len);
	crypto_sha256((const uint8 *) buf.data, buf.len, full);
	memcpy(digest, full, ENVELOPE_BINDING_LEN);
	pfree(buf.data);
}

/* Header of a stored value, reading only its first bytes. */
static void
stored_header(Datum value, uint8 kind, EnvelopeHeader *hdr)
{
	struct varlena *slice;

	slice = (struct varlena *) PG_DETOAST_DATUM_SLICE(value, 0,
													  ENVELOPE_V2_HEADER_LEN);
	envelope_parse_header((const uint8 *) VARDATA_ANY(slice),
						  VARSIZE_ANY_EXHDR(slice), kind, hdr);
}

static const char *
kind_name(uint8 kind)
{
	return kind == ENVELOPE_KIND_VECTOR ? "evector" : "etext";
}

/*
 * Record a denial.  A parallel worker cannot use report_denial() (the
 * leader records what it re-raises only for 42501 and 28000), so it
 * queues the record itself.
 */
static void
binding_denial(Oid relid, const char *message, const char *detail)
{
	AuditEvent	ev;

	if (!IsParallelWorker())
	{
		report_denial(message, detail);
		return;
	}
	memset(&ev, 0, sizeof(ev));
	ev.action = AUDIT_ACTION_DENIAL;
	ev.outcome = AUDIT_OUTCOME_DENIED;
	ev.relid = relid;
	ev.rows = -1;
	ev.detail = psprintf("%s: %s", message, detail);
	audit_emit(&ev, false);
}

/* Refuse a value found bound elsewhere or unbound: XX001, recorded. */
static void
refuse_read(BindingRel *br, BindingColumn *col, bool bound)
{
	char	   *message;

	if (bound)
	{
		message = psprintf("ciphertext of column \"%s\" of table %s is bound to another row",
						   col->name, br->relname);
		binding_denial(br->relid, message, "a value sealed for another table, column or row was moved here");
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("%s", message),
				 errdetail("The %s value was encrypted for another table, column or row and was copied or moved here; it is not decrypted.",
						   kind_name(col->kind))));
	}
	message = psprintf("ciphertext of column \"%s\" of table %s is not bound to its row",
					   col->name, br->relname);
	binding_denial(br->relid, message, "an unbound value in a protected table");
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("%s", message),
			 errdetail("Every %s value in a protected table is bound to its row when it is written.",
					   kind_name(col->kind)),
			 errhint("Values stored before the table was protected are bound by vecphi.bind_existing().")));
}

/* Re-seal one stored value bound to digest, for tenant_id. */
static Datum
reseal(Datum value, uint8 kind, uint32 tenant_id, const uint8 *digest,
	   bool check_claimant)
{
	struct varlena *env = (struct varlena *) PG_DETOAST_DATUM(value);
	EnvelopeHeader hdr;
	Size		len;
	void	   *plaintext;
	struct varlena *sealed;

	if (check_claimant)
		plaintext = envelope_open(env, kind, &hdr, &len);
	else
	{
		envelope_read_header(env, kind, &hdr);
		plaintext = envelope_decrypt(env, kind, &hdr, &len);
	}
	sealed = envelope_seal_for(kind, hdr.count, plaintext, len, tenant_id, digest);
	crypto_wipe(plaintext, len);
	pfree(plaintext);
	return PointerGetDatum(sealed);
}

/* fn_extra cache: the BindingRel for relid, rebuilt when relid changes. */
static BindingRel *
cached_rel(FunctionCallInfo fcinfo, Oid relid, TupleDesc desc)
{
	BindingRel *br = (BindingRel *) fcinfo->flinfo->fn_extra;

	if (br == NULL || br->relid != relid)
	{
		br = binding_rel_build(relid, desc, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = br;
	}
	return br;
}

/*
 * vecphi.bind_row(): BEFORE INSERT OR UPDATE row trigger of protected
 * tables.  Binds every evector and etext value of the new row to it.
 */
PG_FUNCTION_INFO_V1(vecphi_bind_row);
Datum
vecphi_bind_row(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	TupleDesc	desc;
	HeapTuple	tuple;
	BindingRel *br;
	StringInfoData key;
	Datum	   *repl = NULL;
	bool	   *doRepl = NULL;
	bool	   *nulls = NULL;
	bool		changed = false;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		elog(ERROR, "vecphi.bind_row() must be a BEFORE INSERT OR UPDATE row trigger");

	rel = trigdata->tg_relation;
	desc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	br = cached_rel(fcinfo, RelationGetRelid(rel), desc);
	if (br->ncolumns == 0)
		return PointerGetDatum(tuple);

	initStringInfo(&key);
	row_key_bytes(br, tuple, desc, &key);
	for (int i = 0; i < br->ncolumns; i++)
	{
		BindingColumn *col = &br->columns[i];
		bool		isnull;
		Datum		value = heap_getattr(tuple, col->attnum, desc, &isnull);
		EnvelopeHeader hdr;
		uint8		digest[ENVELOPE_BINDING_LEN];
		const VecphiClaims *claims;
		char	   *message;

		if (isnull)
			continue;
		stored_header(value, col->kind, &hdr);
		binding_digest(br, col, &key, digest);
		if (hdr.bound && crypto_equal(hdr.binding, digest, ENVELOPE_BINDING_LEN))
			continue;

		/* Unbound, or bound elsewhere: re-seal under the writer's claims. */
		claims = claims_current();
		if (claims == NULL)
		{
			message = psprintf("cannot bind ciphertext of column \"%s\" of table %s to its row",
							   col->name, br->relname);
			vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, message,
						hdr.bound ? "value bound to another row, writer without claims" :
						"unbound value, writer without claims",
						errdetail(hdr.bound ?
								  "The value was sealed for another table, column or row; re-sealing it for this row needs the verified claims of its tenant." :
								  "The value is not bound to a row; binding it needs the verified claims of its tenant."));
		}
		if (hdr.tenant_id != claims_require_tenant_id())
		{
			/*
			 * Another tenant's value.  Where row-level security applies its
			 * WITH CHECK refuses the row; leave that to it.  Otherwise (a
			 * role that bypasses it) refuse here.
			 */
			if (check_enable_rls(br->relid, InvalidOid, true) == RLS_ENABLED)
				continue;
			message = psprintf("permission denied to bind ciphertext of column \"%s\" of table %s",
							   col->name, br->relname);
			vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, message, "another tenant's value",
						errdetail("The value belongs to another tenant than the verified claims."));
		}
		if (repl == NULL)
		{
			repl = palloc0(sizeof(Datum) * desc->natts);
			doRepl = palloc0(sizeof(bool) * desc->natts);
			nulls = palloc0(sizeof(bool) * desc->natts);
		}
		repl[col->attnum - 1] = reseal(value, col->kind, hdr.tenant_id, digest, true);
		doRepl[col->attnum - 1] = true;
		changed = true;
	}
	pfree(key.data);
	if (!changed)
		return PointerGetDatum(tuple);
	return PointerGetDatum(heap_modify_tuple(tuple, desc, repl, nulls, doRepl));
}

/*
 * vecphi.row_bound(record): policy check that every evector and etext
 * value of a protected table's row is bound to that row.  Reads headers
 * only.  Raises XX001 (recorded as a denial) otherwise; returns true.
 */
PG_FUNCTION_INFO_V1(vecphi_row_bound);
Datum
vecphi_row_bound(PG_FUNCTION_ARGS)
{
	HeapTupleHeader td;
	Oid			typid;
	Oid			relid;
	TupleDesc	desc;
	HeapTupleData tuple;
	BindingRel *br = (BindingRel *) fcinfo->flinfo->fn_extra;
	StringInfoData key;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	td = PG_GETARG_HEAPTUPLEHEADER(0);
	typid = HeapTupleHeaderGetTypeId(td);
	desc = lookup_rowtype_tupdesc(typid, HeapTupleHeaderGetTypMod(td));
	if (br == NULL || br->typid != typid)
	{
		relid = get_typ_typrelid(typid);
		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("vecphi.row_bound() needs a table's row")));
		br = cached_rel(fcinfo, relid, desc);
	}
	if (br->ncolumns == 0)
	{
		ReleaseTupleDesc(desc);
		PG_RETURN_BOOL(true);
	}
	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;

	initStringInfo(&key);
	row_key_bytes(br, &tuple, desc, &key);
	for (int i = 0; i < br->ncolumns; i++)
	{
		BindingColumn *col = &br->columns[i];
		bool		isnull;
		Datum		value = heap_getattr(&tuple, col->attnum, desc, &isnull);
		EnvelopeHeader hdr;
		uint8		digest[ENVELOPE_BINDING_LEN];

		if (isnull)
			continue;
		stored_header(value, col->kind, &hdr);
		if (!hdr.bound)
			refuse_read(br, col, false);
		binding_digest(br, col, &key, digest);
		if (!crypto_equal(hdr.binding, digest, ENVELOPE_BINDING_LEN))
			refuse_read(br, col, true);
	}
	pfree(key.data);
	ReleaseTupleDesc(desc);
	PG_RETURN_BOOL(true);
}

/*
 * Does the table (or a partition of it) already hold an unbound evector or
 * etext value?  Reads headers only, and stops at the first one found.
 */
static bool
binding_holds_unbound_values(Oid relid)
{
	List	   *rels;
	ListCell   *lc;
	Oid			evector;
	Oid			etext;
	bool		found = false;

	/* find_all_inheritors() locks the children only: lock the table too. */
	LockRelationOid(relid, AccessShareLock);
	rels = find_all_inheritors(relid, AccessShareLock, NULL);
	vecphi_ciphertext_types(&evector, &etext);
	foreach(lc, rels)
	{
		Relation	rel;
		TupleDesc	desc;
		TableScanDesc scan;
		HeapTuple	tuple;

		if (get_rel_relkind(lfirst_oid(lc)) != RELKIND_RELATION)
			continue;
		rel = table_open(lfirst_oid(lc), NoLock);
		desc = RelationGetDescr(rel);
		scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
		while (!found && (tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
		{
			for (int i = 0; !found && i < desc->natts; i++)
			{
				Form_pg_attribute att = TupleDescAttr(desc, i);
				uint8		kind;
				bool		isnull;
				Datum		value;
				EnvelopeHeader hdr;

				if (att->attisdropped)
					continue;
				kind = ciphertext_type_kind(att->atttypid, evector, etext);
				if (kind == 0)
					continue;
				value = heap_getattr(tuple, i + 1, desc, &isnull);
				if (isnull)
					continue;
				stored_header(value, kind, &hdr);
				found = !hdr.bound;
			}
		}
		table_endscan(scan);
		table_close(rel, NoLock);
		if (found)
			break;
	}
	return found;
}

/*
 * vecphi.register_binding(tbl, label): called by protect().  Registers the
 * table in vecphi.protected_tables (binding_register()) and, the first
 * time, warns when the table already holds values not bound to their rows.
 */
PG_FUNCTION_INFO_V1(vecphi_register_binding);
Datum
vecphi_register_binding(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *wanted = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *label;
	bool		registered;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be NULL")));
	relid = PG_GETARG_OID(0);
	label = binding_register(relid, wanted, &registered);
	if (registered && binding_holds_unbound_values(relid))
		ereport(WARNING,
				(errmsg("table %s holds ciphertext that is not bound to its rows",
						binding_relname(relid)),
				 errdetail("Claimants' reads of those rows fail (XX001) until they are bound."),
				 errhint("A member of vecphi_security_officer or vecphi_key_admin binds them with vecphi.bind_existing('%s').",
						 binding_relname(relid))));
	PG_RETURN_TEXT_P(cstring_to_text(label));
}

/*
 * vecphi.bind_existing(tbl): bind every unbound evector and etext value
 * of a protected table to the row it is in, with the keyring directly (no
 * claims).  Refuses, and changes nothing, when a value is bound elsewhere.
 * For the security officer and the key administrator (EXECUTE is granted
 * to them only); recorded in the audit log.  Returns the values bound.
 */
PG_FUNCTION_INFO_V1(vecphi_bind_existing);
Datum
vecphi_bind_existing(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	List	   *rels;
	ListCell   *lc;
	int64		bound = 0;
	BindingEntry entry;
	Oid			save_userid;
	int			save_sec;
	AuditEvent	ev;

	if (!binding_lookup(relid, &entry))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s is not protected", binding_relname(relid)),
				 errhint("Call vecphi.protect() on the table first.")));

	/*
	 * Writers wait; readers go on.  find_all_inheritors() locks the
	 * partitions but not the table itself, which table_open(NoLock) below
	 * requires (an assert-enabled server traps without this lock).
	 */
	LockRelationOid(relid, ShareRowExclusiveLock);
	rels = find_all_inheritors(relid, ShareRowExclusiveLock, NULL);
	GetUserIdAndSecContext(&save_userid, &save_sec);
	foreach(lc, rels)
	{
		Oid			leaf = lfirst_oid(lc);
		Relation	rel;
		TupleDesc	desc;
		BindingRel *br;
		EState	   *estate;
		ResultRelInfo *rri;
		TupleTableSlot *slot;
		Snapshot	snapshot;
		TableScanDesc scan;
		HeapTuple	tuple;
		MemoryContext rowcxt;

		if (get_rel_relkind(leaf) != RELKIND_RELATION)
			continue;
		rel = table_open(leaf, NoLock);
		desc = RelationGetDescr(rel);
		br = binding_rel_build(leaf, desc, CurrentMemoryContext);
		if (br->ncolumns == 0)
		{
			table_close(rel, NoLock);
			continue;
		}

		/*
		 * Index maintenance (index expressions, ehnsw) runs as the table's
		 * owner in a restricted context, as REINDEX does.
		 */
		SetUserIdAndSecContext(rel->rd_rel->relowner,
							   save_sec | SECURITY_RESTRICTED_OPERATION);
		estate = CreateExecutorState();
		rri = makeNode(ResultRelInfo);
		InitResultRelInfo(rri, rel, 1, NULL, 0);
		ExecOpenIndices(rri, false);
		slot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
		rowcxt = AllocSetContextCreate(CurrentMemoryContext, "vecphi bind_existing row",
									   ALLOCSET_DEFAULT_SIZES);
		snapshot = RegisterSnapshot(GetLatestSnapshot());
		scan = table_beginscan(rel, snapshot, 0, NULL);
		while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(rowcxt);
			StringInfoData key;
			Datum	   *repl = palloc0(sizeof(Datum) * desc->natts);
			bool	   *nulls = palloc0(sizeof(bool) * desc->natts);
			bool	   *doRepl = palloc0(sizeof(bool) * desc->natts);
			bool		changed = false;

			initStringInfo(&key);
			row_key_bytes(br, tuple, desc, &key);
			for (int i = 0; i < br->ncolumns; i++)
			{
				BindingColumn *col = &br->columns[i];
				bool		isnull;
				Datum		value = heap_getattr(tuple, col->attnum, desc, &isnull);
				EnvelopeHeader hdr;
				uint8		digest[ENVELOPE_BINDING_LEN];

				if (isnull)
					continue;
				stored_header(value, col->kind, &hdr);
				binding_digest(br, col, &key, digest);
				if (hdr.bound)
				{
					if (crypto_equal(hdr.binding, digest, ENVELOPE_BINDING_LEN))
						continue;
					SetUserIdAndSecContext(save_userid, save_sec);
					refuse_read(br, col, true);
				}
				repl[col->attnum - 1] = reseal(value, col->kind, hdr.tenant_id,
											   digest, false);
				doRepl[col->attnum - 1] = true;
				changed = true;
				bound++;
			}
			if (changed)
			{
				HeapTuple	newtup = heap_modify_tuple(tuple, desc, repl, nulls, doRepl);

				simple_heap_update(rel, &tuple->t_self, newtup);
				if (!HeapTupleIsHeapOnly(newtup))
				{
					/* update = false: there is no range table for its hint */
					ExecStoreHeapTuple(newtup, slot, false);
					(void) ExecInsertIndexTuples(rri, slot, estate, false, false,
												 NULL, NIL);
					ExecClearTuple(slot);
				}
			}
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
			ResetPerTupleExprContext(estate);
		}
		table_endscan(scan);
		UnregisterSnapshot(snapshot);
		ExecDropSingleTupleTableSlot(slot);
		ExecCloseIndices(rri);
		FreeExecutorState(estate);
		MemoryContextDelete(rowcxt);
		SetUserIdAndSecContext(save_userid, save_sec);
		table_close(rel, NoLock);
		CommandCounterIncrement();
	}

	memset(&ev, 0, sizeof(ev));
	ev.action = AUDIT_ACTION_BIND;
	ev.outcome = AUDIT_OUTCOME_OK;
	ev.relid = relid;
	ev.rows = bound;
	ev.detail = psprintf("bound %lld existing values to their rows under label \"%s\"",
						 (long long) bound, entry.label);
	audit_emit(&ev, true);
	PG_RETURN_INT64(bound);
}
