/*-------------------------------------------------------------------------
 *
 * ciphertypes.c
 *	  Finding vecphi's ciphertext types in a database.
 *
 * The catalog side of the types layer: the schema vecphi was installed in
 * (PostgreSQL 15 does not export a lookup), the OIDs of evector and etext
 * there, and the two questions the upper layers ask of a column's type.
 * The audit's executor capture asks a third, schema-independent one
 * (is the type's input function vecphi's? auditexec.c, type_is_protected)
 * on purpose: it runs for every statement and caches by type OID.
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
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "ciphertypes.h"
#include "envelope.h"

/*
 * Schema and owner of the vecphi extension, from its pg_extension row
 * (either pointer may be NULL).  When it is not installed: false if
 * missing_ok, else an error.
 */
bool
vecphi_extension_row(Oid *nsp, Oid *owner, bool missing_ok)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		found = false;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("vecphi"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_extension ext = (Form_pg_extension) GETSTRUCT(tuple);

		if (nsp)
			*nsp = ext->extnamespace;
		if (owner)
			*owner = ext->extowner;
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!found && !missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"vecphi\" is not installed in this database")));
	return found;
}

/*
 * Schema vecphi was installed in.  When it is not installed: InvalidOid if
 * missing_ok, else an error.
 */
Oid
vecphi_extension_namespace(bool missing_ok)
{
	Oid			nsp = InvalidOid;

	(void) vecphi_extension_row(&nsp, NULL, missing_ok);
	return nsp;
}

/* OIDs of evector and etext in schema nsp (InvalidOid where absent). */
void
vecphi_ciphertext_types_in(Oid nsp, Oid *evector, Oid *etext)
{
	*evector = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
							   CStringGetDatum("evector"), ObjectIdGetDatum(nsp));
	*etext = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
							 CStringGetDatum("etext"), ObjectIdGetDatum(nsp));
}

/* OIDs of evector and etext; an error when vecphi is not installed. */
void
vecphi_ciphertext_types(Oid *evector, Oid *etext)
{
	vecphi_ciphertext_types_in(vecphi_extension_namespace(false), evector, etext);
}

/*
 * The envelope kind (ENVELOPE_KIND_*) a column of type typid holds
 * directly: evector or etext, or a domain over one; else 0.
 */
uint8
ciphertext_type_kind(Oid typid, Oid evector, Oid etext)
{
	typid = getBaseType(typid);
	if (typid == evector)
		return ENVELOPE_KIND_VECTOR;
	if (typid == etext)
		return ENVELOPE_KIND_TEXT;
	return 0;
}

/* Is the type evector or etext, or a domain or array over one? */
bool
ciphertext_type_holds(Oid typid, Oid evector, Oid etext)
{
	Oid			elem;

	typid = getBaseType(typid);
	elem = get_element_type(typid);
	if (OidIsValid(elem))
		typid = getBaseType(elem);
	return typid == evector || typid == etext;
}
