/*-------------------------------------------------------------------------
 *
 * rls.c
 *	  Helpers for the row-level security policies vecphi.protect() writes.
 *
 * vecphi.row_owned_by_claimant(row) is the write check: every evector and
 * etext value anywhere in the row — a column of a domain over them, an
 * array of them, a composite holding them, a column added after protect()
 * ran — must be NULL or encrypted under the claimant's tenant.  It reads
 * only the values' authenticated headers; nothing is decrypted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/fmgroids.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "ciphertypes.h"
#include "envelope.h"

/* Composite values nested deeper than this are refused, not walked. */
#define ROW_CHECK_MAX_DEPTH 8

typedef struct RowCheckTypes
{
	Oid			evector;
	Oid			etext;
} RowCheckTypes;

/* OIDs of evector and etext, in the schema the extension was installed in. */
static void
row_check_types(RowCheckTypes *types)
{
	vecphi_ciphertext_types(&types->evector, &types->etext);
}

static bool row_owned(HeapTupleHeader td, const RowCheckTypes *types, int depth);

/* Is every ciphertext in this value the claimant's? */
static bool
value_owned(Datum value, Oid typid, const RowCheckTypes *types, int depth)
{
	Oid			elemtype;

	typid = getBaseType(typid);
	if (typid == types->evector)
		return envelope_owned_by_claimant((struct varlena *) PG_DETOAST_DATUM(value),
										  ENVELOPE_KIND_VECTOR);
	if (typid == types->etext)
		return envelope_owned_by_claimant((struct varlena *) PG_DETOAST_DATUM(value),
										  ENVELOPE_KIND_TEXT);

	elemtype = get_element_type(typid);
	if (OidIsValid(elemtype))
	{
		ArrayType  *array = DatumGetArrayTypeP(value);
		int16		typlen;
		bool		typbyval;
		char		typalign;
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		int			i;

		get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
		deconstruct_array(array, elemtype, typlen, typbyval, typalign,
						  &elems, &nulls, &n);
		for (i = 0; i < n; i++)
			if (!nulls[i] && !value_owned(elems[i], elemtype, types, depth))
				return false;
		return true;
	}

	if (type_is_rowtype(typid))
	{
		if (depth >= ROW_CHECK_MAX_DEPTH)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("composite values nested more than %d deep cannot be checked for ciphertext",
							ROW_CHECK_MAX_DEPTH)));
		return row_owned(DatumGetHeapTupleHeader(value), types, depth + 1);
	}
	return true;
}

/* Is every ciphertext in this row the claimant's? */
static bool
row_owned(HeapTupleHeader td, const RowCheckTypes *types, int depth)
{
	TupleDesc	tupdesc;
	HeapTupleData tuple;
	bool		owned = true;
	int			i;

	tupdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(td),
									 HeapTupleHeaderGetTypMod(td));
	tuple.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = td;
	for (i = 0; owned && i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		bool		isnull;
		Datum		value;

		if (att->attisdropped)
			continue;
		value = heap_getattr(&tuple, i + 1, tupdesc, &isnull);
		if (!isnull)
			owned = value_owned(value, att->atttypid, types, depth);
	}
	ReleaseTupleDesc(tupdesc);
	return owned;
}

PG_FUNCTION_INFO_V1(vecphi_row_owned_by_claimant);
Datum
vecphi_row_owned_by_claimant(PG_FUNCTION_ARGS)
{
	RowCheckTypes *types = (RowCheckTypes *) fcinfo->flinfo->fn_extra;

	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(true);
	if (types == NULL)
	{
		types = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(RowCheckTypes));
		row_check_types(types);
		fcinfo->flinfo->fn_extra = types;
	}
	PG_RETURN_BOOL(row_owned(PG_GETARG_HEAPTUPLEHEADER(0), types, 0));
}

/*
 * vecphi.values_owned_by_claimant(VARIADIC "any"): the same check over the
 * values given, for the policies of a table Citus manages, which cannot
 * hold a whole-row reference (protect() passes the columns that can hold
 * ciphertext).
 */
PG_FUNCTION_INFO_V1(vecphi_values_owned_by_claimant);
Datum
vecphi_values_owned_by_claimant(PG_FUNCTION_ARGS)
{
	RowCheckTypes *types = (RowCheckTypes *) fcinfo->flinfo->fn_extra;
	int			i;

	if (types == NULL)
	{
		types = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(RowCheckTypes));
		row_check_types(types);
		fcinfo->flinfo->fn_extra = types;
	}
	for (i = 0; i < PG_NARGS(); i++)
	{
		Oid			typid = get_fn_expr_argtype(fcinfo->flinfo, i);

		if (PG_ARGISNULL(i))
			continue;
		if (!OidIsValid(typid))
			ereport(ERROR,
					(errcode(ERRCODE_INDETERMINATE_DATATYPE),
					 errmsg("could not determine the type of argument %d", i + 1)));
		if (!value_owned(PG_GETARG_DATUM(i), typid, types, 0))
			PG_RETURN_BOOL(false);
	}
	PG_RETURN_BOOL(true);
}
