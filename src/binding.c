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
#include "claims.h"
#include "crypto.h"
#include "envelope.h"

#define BINDING_DOMAIN_TAG	"vecphi binding 1"
#define BINDING_CATALOG		"protected_tables"
#define Natts_protected_tables	5
#define Anum_pt_relid		1
#define Anum_pt_label		2
#define Anum_pt_colnames	3
#define Anum_pt_collabels	4

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

/* A registered table's catalog row. */
typedef struct BindingEntry
{
	Oid			relid;
	char	   *label;
	int			nnames;
	char	  **names;
	char	  **labels;
} BindingEntry;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Make room for n columns in an entry's name and label arrays. */
static void
entry_grow(BindingEntry *entry, int n)
{
	char	  **names = palloc0(sizeof(char *) * Max(n, 1));
	char	  **labels = palloc0(sizeof(char *) * Max(n, 1));

	for (int i = 0; i < entry->nnames; i++)
	{
		names[i] = entry->names[i];
		labels[i] = entry->labels[i];
	}
	entry->names = names;
	entry->labels = labels;
}

/* OID of vecphi.protected_tables, or InvalidOid without the extension. */
static Oid
catalog_relid(void)
{
	Oid			nsp;

	if (!OidIsValid(get_extension_oid("vecphi", true)))
		return InvalidOid;
	nsp = get_namespace_oid("vecphi", true);
	if (!OidIsValid(nsp))
		return InvalidOid;
	return get_relname_relid(BINDING_CATALOG, nsp);
}

/* Read the catalog row of exactly relid; false when it has none. */
static bool
catalog_read(Oid catid, Oid relid, BindingEntry *entry)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;
	Snapshot	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();

	rel = table_open(catid, AccessShareLock);
	ScanKeyInit(&key, Anum_pt_relid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(rel, InvalidOid, false, snapshot, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		Datum		d;
		Datum	   *names;
		Datum	   *labels;
		int			nlabels;
		int			i;

		found = true;
		entry->relid = relid;
		d = heap_getattr(tuple, Anum_pt_label, desc, &isnull);
		entry->label = TextDatumGetCString(d);
		d = heap_getattr(tuple, Anum_pt_colnames, desc, &isnull);
		deconstruct_array(DatumGetArrayTypeP(d), NAMEOID, NAMEDATALEN, false,
						  TYPALIGN_CHAR, &names, NULL, &entry->nnames);
		d = heap_getattr(tuple, Anum_pt_collabels, desc, &isnull);
		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false,
						  TYPALIGN_INT, &labels, NULL, &nlabels);
		if (nlabels != entry->nnames)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("vecphi.protected_tables row of relation %u is damaged", relid),
					 errdetail("It lists %d columns and %d column labels.",
							   entry->nnames, nlabels)));
		entry->names = palloc(sizeof(char *) * Max(entry->nnames, 1));
		entry->labels = palloc(sizeof(char *) * Max(entry->nnames, 1));
		for (i = 0; i < entry->nnames; i++)
		{
			entry->names[i] = pstrdup(NameStr(*DatumGetName(names[i])));
			entry->labels[i] = TextDatumGetCString(labels[i]);
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The binding entry that governs relid: that of its top-most registered
 * ancestor (a partition's values are bound to the partitioned table), or
 * its own.  False when neither is registered.
 */
static bool
binding_lookup(Oid relid, BindingEntry *entry)
{
	Oid			catid = catalog_relid();
	List	   *ancestors = NIL;

	if (!OidIsValid(catid))
		return false;
	if (get_rel_relispartition(relid))
		ancestors = get_partition_ancestors(relid);
	/* get_partition_ancestors lists the parent first, the root last. */
	for (int i = list_length(ancestors) - 1; i >= 0; i--)
		if (catalog_read(catid, list_nth_oid(ancestors, i), entry))
			return true;
	return catalog_read(catid, relid, entry);
}

/* "schema.name" of a relation, for labels and messages. */
static char *
qualified_relname(Oid relid)
{
	return psprintf("%s.%s", get_namespace_name(get_rel_namespace(relid)),
					get_rel_name(relid));
}

/* Is typid (a domain over) evector or etext?  Returns the kind or 0. */
static uint8
ciphertext_kind(Oid typid, Oid evector, Oid etext)
{
	typid = getBaseType(typid);
	if (typid == evector)
		return ENVELOPE_KIND_VECTOR;
	if (typid == etext)
		return ENVELOPE_KIND_TEXT;
	return 0;
}

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
	br->relname = qualified_relname(relid);
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
		kind = ciphertext_kind(att->atttypid, evector, etext);
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
 * Record a denial.  A parallel worker cannot use audit_denial() (the
 * leader records what it re-raises only for 42501 and 28000), so it
 * queues the record itself.
 */
static void
binding_denial(Oid relid, const char *message, const char *detail)
{
	AuditEvent	ev;

	if (!IsParallelWorker())
	{
		audit_denial(message, detail);
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
			audit_denial(message, hdr.bound ? "value bound to another row, writer without claims" :
						 "unbound value, writer without claims");
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("%s", message),
					 errdetail(hdr.bound ?
							   "The value was sealed for another table, column or row; re-sealing it for this row needs the verified claims of its tenant." :
							   "The value is not bound to a row; binding it needs the verified claims of its tenant.")));
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
			audit_denial(message, "another tenant's value");
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("%s", message),
					 errdetail("The value belongs to another tenant than the verified claims.")));
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

/* The extension owner, who owns vecphi.protected_tables. */
static Oid
extension_owner(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			owner = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("vecphi"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		owner = ((Form_pg_extension) GETSTRUCT(tuple))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"vecphi\" is not installed in this database")));
	return owner;
}

/*
 * Run one statement on vecphi.protected_tables as the extension owner.
 * Every name in sql is schema-qualified and every operator is written
 * OPERATOR(pg_catalog.x), so the caller's search_path cannot reach it.
 */
static void
catalog_exec(const char *sql, int nargs, Oid *types, Datum *values)
{
	Oid			save_userid;
	int			save_sec;
	int			rc;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(extension_owner(),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);
		if (rc < 0)
			elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

/* Write an entry's column names and labels back. */
static void
catalog_write_columns(BindingEntry *entry, bool insert)
{
	Datum	   *names = palloc(sizeof(Datum) * Max(entry->nnames, 1));
	Datum	   *labels = palloc(sizeof(Datum) * Max(entry->nnames, 1));
	Oid			types[4] = {REGCLASSOID, TEXTOID, NAMEARRAYOID, TEXTARRAYOID};
	Datum		values[4];

	for (int i = 0; i < entry->nnames; i++)
	{
		Name		n = palloc0(NAMEDATALEN);

		namestrcpy(n, entry->names[i]);
		names[i] = NameGetDatum(n);
		labels[i] = CStringGetTextDatum(entry->labels[i]);
	}
	values[0] = ObjectIdGetDatum(entry->relid);
	values[1] = CStringGetTextDatum(entry->label);
	values[2] = PointerGetDatum(construct_array(names, entry->nnames, NAMEOID,
												NAMEDATALEN, false, TYPALIGN_CHAR));
	values[3] = PointerGetDatum(construct_array(labels, entry->nnames, TEXTOID,
												-1, false, TYPALIGN_INT));
	if (insert)
		catalog_exec("INSERT INTO vecphi.protected_tables "
					 "(relid, binding_label, column_names, column_labels) "
					 "VALUES ($1, $2, $3, $4)", 4, types, values);
	else
		catalog_exec("UPDATE vecphi.protected_tables "
					 "SET column_names = $3, column_labels = $4 "
					 "WHERE relid OPERATOR(pg_catalog.=) $1 "
					 "AND binding_label OPERATOR(pg_catalog.=) $2", 4, types, values);
	CommandCounterIncrement();
}

/*
 * Does the table (or a partition of it) already hold an unbound evector or
 * etext value?  Reads headers only, and stops at the first one found.
 */
static bool
holds_unbound_values(Oid relid)
{
	List	   *rels = find_all_inheritors(relid, AccessShareLock, NULL);
	ListCell   *lc;
	Oid			evector;
	Oid			etext;
	bool		found = false;

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
				kind = ciphertext_kind(att->atttypid, evector, etext);
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
 * vecphi.register_binding(tbl, label): called by protect().  Registers
 * the table's binding label (its qualified name unless given; a label of
 * one's choosing needs the security officer) and its ciphertext columns.
 * A label never changes once set.  Returns the label.
 */
PG_FUNCTION_INFO_V1(vecphi_register_binding);
Datum
vecphi_register_binding(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *wanted = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			catid = catalog_relid();
	BindingEntry entry;
	bool		exists;
	Oid			evector;
	Oid			etext;
	Relation	rel;
	TupleDesc	desc;
	int			before;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be NULL")));
	relid = PG_GETARG_OID(0);
	if (!OidIsValid(catid))
		elog(ERROR, "vecphi.protected_tables is missing");
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
	if (wanted != NULL && wanted[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("binding label must not be empty")));

	exists = catalog_read(catid, relid, &entry);
	if (exists)
	{
		if (wanted != NULL && strcmp(wanted, entry.label) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table %s is already bound under label \"%s\"",
							qualified_relname(relid), entry.label),
					 errdetail("A binding label never changes: the values already written are sealed under it.")));
	}
	else
	{
		char	   *deflabel = qualified_relname(relid);
		Oid			types[1] = {TEXTOID};
		Datum		values[1];

		if (wanted != NULL && strcmp(wanted, deflabel) != 0 && !superuser() &&
			!has_privs_of_role(GetUserId(), get_role_oid("vecphi_security_officer", false)))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to choose the binding label of table %s", deflabel),
					 errdetail("Only a member of vecphi_security_officer may bind a table under a label other than its name (for a logical replication subscriber or a restore under another name).")));
		entry.relid = relid;
		entry.label = wanted ? wanted : deflabel;
		entry.nnames = 0;
		entry.names = NULL;
		entry.labels = NULL;
		/* A label left behind by a table dropped meanwhile is free again. */
		values[0] = CStringGetTextDatum(entry.label);
		catalog_exec("DELETE FROM vecphi.protected_tables p "
					 "WHERE p.binding_label OPERATOR(pg_catalog.=) $1 AND NOT EXISTS "
					 "(SELECT FROM pg_catalog.pg_class c "
					 "WHERE c.oid OPERATOR(pg_catalog.=) p.relid::pg_catalog.oid)",
					 1, types, values);
	}

	/* Columns not listed yet are labelled with their current names. */
	vecphi_ciphertext_types(&evector, &etext);
	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	before = entry.nnames;
	entry_grow(&entry, entry.nnames + desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		listed = false;

		if (att->attisdropped ||
			ciphertext_kind(att->atttypid, evector, etext) == 0)
			continue;
		for (int j = 0; j < entry.nnames; j++)
			if (strcmp(entry.names[j], NameStr(att->attname)) == 0)
				listed = true;
		if (listed)
			continue;
		entry.names[entry.nnames] = pstrdup(NameStr(att->attname));
		entry.labels[entry.nnames] = entry.names[entry.nnames];
		entry.nnames++;
	}
	table_close(rel, AccessShareLock);

	if (!exists)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(entry.label)};
		int			rc;

		/* The label must be free (a clear error rather than 23505). */
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rc = SPI_execute_with_args("SELECT p.relid::pg_catalog.text FROM vecphi.protected_tables p "
								   "WHERE p.binding_label OPERATOR(pg_catalog.=) $1",
								   1, types, values, NULL, true, 1);
		if (rc == SPI_OK_SELECT && SPI_processed > 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNIQUE_VIOLATION),
					 errmsg("binding label \"%s\" is in use by table %s",
							entry.label, SPI_getvalue(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1))));
		SPI_finish();
		catalog_write_columns(&entry, true);
		if (holds_unbound_values(relid))
			ereport(WARNING,
					(errmsg("table %s holds ciphertext that is not bound to its rows",
							qualified_relname(relid)),
					 errdetail("Claimants' reads of those rows fail (XX001) until they are bound."),
					 errhint("A member of vecphi_security_officer or vecphi_key_admin binds them with vecphi.bind_existing('%s').",
							 qualified_relname(relid))));
	}
	else if (entry.nnames != before)
		catalog_write_columns(&entry, false);
	PG_RETURN_TEXT_P(cstring_to_text(entry.label));
}

/*
 * After ALTER TABLE ... RENAME COLUMN of a registered table: the column
 * keeps its label (the values are sealed under it) under its new name.
 */
static void
binding_note_rename(Oid relid, const char *oldname, const char *newname)
{
	Oid			catid = catalog_relid();
	BindingEntry entry;
	bool		found = false;
	Oid			evector;
	Oid			etext;
	AttrNumber	attnum;

	if (!OidIsValid(catid) || !catalog_read(catid, relid, &entry))
		return;
	for (int j = 0; j < entry.nnames; j++)
		if (strcmp(entry.names[j], oldname) == 0)
		{
			entry.names[j] = pstrdup(newname);
			found = true;
		}
	if (!found)
	{
		vecphi_ciphertext_types(&evector, &etext);
		attnum = get_attnum(relid, newname);
		if (attnum == InvalidAttrNumber ||
			ciphertext_kind(get_atttype(relid, attnum), evector, etext) == 0)
			return;
		entry_grow(&entry, entry.nnames + 1);
		entry.names[entry.nnames] = pstrdup(newname);
		entry.labels[entry.nnames] = pstrdup(oldname);
		entry.nnames++;
	}
	catalog_write_columns(&entry, false);
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
				 errmsg("table %s is not protected", qualified_relname(relid)),
				 errhint("Call vecphi.protect() on the table first.")));

	/* Writers wait; readers go on.  Partitions are locked too. */
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

/* ALTER TABLE ... RENAME COLUMN keeps the column's binding label. */
static void
binding_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment * queryEnv,
					   DestReceiver *dest, QueryCompletion * qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	RenameStmt *rename = NULL;
	Oid			relid = InvalidOid;
	char	   *oldname = NULL;
	char	   *newname = NULL;

	if (IsA(parsetree, RenameStmt) &&
		((RenameStmt *) parsetree)->renameType == OBJECT_COLUMN &&
		((RenameStmt *) parsetree)->relation != NULL &&
		IsTransactionState())
	{
		rename = (RenameStmt *) parsetree;
		relid = RangeVarGetRelid(rename->relation, NoLock, true);
		oldname = pstrdup(rename->subname);
		newname = pstrdup(rename->newname);
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);

	if (OidIsValid(relid))
		binding_note_rename(relid, oldname, newname);
}

/* Install the utility hook. */
void
binding_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = binding_ProcessUtility;
}
