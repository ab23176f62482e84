/*-------------------------------------------------------------------------
 *
 * migrateddl.c
 *	  Refuse the table rewrites that would encrypt plaintext under one key.
 *
 * evector_in, etext_in and vecphi.encrypt() encrypt under the claimant's
 * tenant.  In a statement that names the rows it writes (INSERT, UPDATE,
 * COPY) that is what the claimant asked for.  In a rewrite of a whole
 * table it is not: ALTER TABLE .. ALTER COLUMN e TYPE evector [USING
 * e::text::evector], with a column of vector, real[], float8[] or text (the
 * assignment cast real[] -> evector needs no USING), would encrypt every
 * tenant's rows under the one key of whoever runs it.  So this hook refuses,
 * for everyone (a superuser too: the damage is the same):
 *
 *	- ALTER COLUMN .. TYPE of a ciphertext type (evector, etext, a domain or
 *	  array over one) when the column does not already hold that kind of
 *	  ciphertext, or holds it but USING computes anything other than the
 *	  column itself (USING e::evector(3) converts between typmods and is
 *	  let through; USING other_col::text::evector is not);
 *	- ADD COLUMN of a ciphertext type with a generated expression (an
 *	  immutable wrapper around the cast would otherwise compute it from a
 *	  plaintext column for every row).
 *
 * Each refusal is 0A000, audited as a denial, and names the real path:
 * vecphi.migrate_column() (migrate.c), which encrypts every row under its
 * own tenant's key.  docs/migration.md lists what is not refused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_type.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "ciphertypes.h"
#include "envelope.h"
#include "hooks.h"
#include "migrate.h"
#include "report.h"

static int	utility_slot;		/* of migrateddl_ProcessUtility (hooks.h) */

/*
 * The envelope kind a type holds: evector or etext, a domain over one, or
 * an array (or domain over an array) of one; else 0.
 */
uint8
migrate_cipher_kind(Oid typid, Oid evector, Oid etext)
{
	uint8		kind = ciphertext_type_kind(typid, evector, etext);
	Oid			elem;

	if (kind != 0 || !OidIsValid(typid))
		return kind;
	elem = get_element_type(getBaseType(typid));
	return OidIsValid(elem) ? ciphertext_type_kind(elem, evector, etext) : 0;
}

/* The type a TypeName names, or InvalidOid (PostgreSQL reports it later). */
static Oid
type_of(TypeName * name)
{
	Type		tup = LookupTypeName(NULL, name, NULL, true);
	Oid			typid;

	if (tup == NULL)
		return InvalidOid;
	typid = typeTypeId(tup);
	ReleaseSysCache(tup);
	return typid;
}

/*
 * Is the raw USING expression the column itself, under casts to ciphertext
 * types or text only?  (A cast to a type of the caller's could run any
 * function of the caller's; evector -> text -> evector is the envelope.)
 */
static bool
using_is_column(Node * expr, const char *column, Oid evector, Oid etext)
{
	while (expr != NULL)
	{
		if (IsA(expr, TypeCast))
		{
			Oid			cast_to = type_of(((TypeCast *) expr)->typeName);

			if (cast_to != TEXTOID &&
				migrate_cipher_kind(cast_to, evector, etext) == 0)
				return false;
			expr = ((TypeCast *) expr)->arg;
		}
		else if (IsA(expr, CollateClause))
			expr = ((CollateClause *) expr)->arg;
		else
			break;
	}
	if (expr != NULL && IsA(expr, ColumnRef))
	{
		List	   *fields = ((ColumnRef *) expr)->fields;
		Node	   *last = llast(fields);

		return IsA(last, String) && strcmp(strVal(last), column) == 0;
	}
	return false;
}

static void
refuse_rewrite(const char *table, const char *column, Oid target,
			   bool adding, const char *why)
{
	char	   *message = adding ?
	psprintf("cannot add generated column \"%s\" of type %s to \"%s\"",
			 column, format_type_be(target), table) :
	psprintf("cannot encrypt column \"%s\" of \"%s\" by changing its type to %s",
			 column, table, format_type_be(target));

	vecphi_deny(ERRCODE_FEATURE_NOT_SUPPORTED, message,
				"table rewrite into ciphertext",
				errdetail("%s would encrypt every row under the key of the current claimant's tenant, whatever tenant the row belongs to.", why),
				errhint("Use CALL vecphi.migrate_column('%s', '%s', '<tenant column>'): it encrypts each row under its own tenant's key.",
						table, column));
}

/* Judge one ALTER TABLE. */
static void
check_alter_table(AlterTableStmt * stmt)
{
	Oid			evector;
	Oid			etext;
	Oid			relid = InvalidOid;
	ListCell   *lc;

	vecphi_ciphertext_types_in(vecphi_extension_namespace(false), &evector, &etext);
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);
		ColumnDef  *def;
		Oid			target;
		uint8		kind;

		if (!IsA(cmd, AlterTableCmd) || cmd->def == NULL || !IsA(cmd->def, ColumnDef))
			continue;
		def = (ColumnDef *) cmd->def;
		if (def->typeName == NULL)
			continue;
		if (cmd->subtype == AT_AlterColumnType)
		{
			AttrNumber	attnum;
			Oid			source;

			target = type_of(def->typeName);
			kind = migrate_cipher_kind(target, evector, etext);
			if (kind == 0)
				continue;
			if (!OidIsValid(relid))
				relid = RangeVarGetRelid(stmt->relation, NoLock, true);
			if (!OidIsValid(relid))
				return;			/* PostgreSQL reports it */
			attnum = get_attnum(relid, cmd->name);
			if (attnum == InvalidAttrNumber)
				continue;
			source = get_atttype(relid, attnum);
			if (migrate_cipher_kind(source, evector, etext) != kind)
				refuse_rewrite(stmt->relation->relname, cmd->name, target, false,
							   psprintf("Converting a column of type %s", format_type_be(source)));
			if (def->raw_default != NULL &&
				!using_is_column(def->raw_default, cmd->name, evector, etext))
				refuse_rewrite(stmt->relation->relname, cmd->name, target, false,
							   pstrdup("A USING expression other than the column itself (cast to ciphertext types or text only)"));
		}
		else if (cmd->subtype == AT_AddColumn)
		{
			ListCell   *lc2;

			target = type_of(def->typeName);
			if (migrate_cipher_kind(target, evector, etext) == 0)
				continue;
			foreach(lc2, def->constraints)
			{
				Constraint *con = lfirst(lc2);

				if (IsA(con, Constraint) && con->contype == CONSTR_GENERATED)
					refuse_rewrite(stmt->relation->relname, def->colname, target, true,
								   pstrdup("A generated column"));
			}
		}
	}
}

static void
migrateddl_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
						  bool readOnlyTree, ProcessUtilityContext context,
						  ParamListInfo params, QueryEnvironment * queryEnv,
						  DestReceiver *dest, QueryCompletion * qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (IsA(stmt, AlterTableStmt) && !IsBinaryUpgrade &&
		IsTransactionState() && OidIsValid(MyDatabaseId) &&
		OidIsValid(vecphi_extension_namespace(true)))
		check_alter_table((AlterTableStmt *) stmt);

	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context,
				 params, queryEnv, dest, qc);
}

/* Register the hook; called once from _PG_init. */
void
migrate_init(void)
{
	utility_slot = utility_register(migrateddl_ProcessUtility);
}
