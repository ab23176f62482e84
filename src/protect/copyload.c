/*-------------------------------------------------------------------------
 *
 * copyload.c
 *	  COPY ... FROM STDIN into a protected table for a role its row
 *	  security applies to: each row goes in as an INSERT.
 *
 * PostgreSQL refuses COPY FROM into a table whose row security applies to
 * the current user (DoCopy: "COPY FROM not supported with row-level
 * security"), because CopyFrom does not run the policies' WITH CHECK.
 * vecphi.protect() turns row security on, so an application role with
 * claims could not COPY into a protected table, and on Citus could not
 * load a protected distributed table with COPY or with an INSERT ... SELECT
 * that Citus runs through the coordinator: Citus loads the shards with
 * "COPY shard FROM STDIN" on the workers, and the worker refuses it there
 * (the coordinator's COPY does not check row security; it forwards).
 *
 * This handler takes over exactly that statement: COPY rel [(cols)] FROM
 * STDIN, no WHERE, no FREEZE, rel an ordinary or partitioned table that
 * vecphi protects (its policy vecphi_select; a Citus shard carries its
 * table's policies) and whose row security is enabled for the current
 * user, rel not itself a Citus table (on the coordinator Citus forwards
 * the rows to the shards, where this handler runs).  It parses the rows
 * with PostgreSQL's own COPY code (BeginCopyFrom/NextCopyFrom: same
 * formats, options and input functions) and inserts each through one
 * prepared SPI statement
 *
 *		INSERT INTO rel (cols) OVERRIDING SYSTEM VALUE VALUES ($1, ...)
 *
 * so the executor applies everything an INSERT gets: privileges on the
 * columns, the policies' WITH CHECK, constraints, defaults of the columns
 * not listed, triggers, indexes.  OVERRIDING SYSTEM VALUE keeps COPY's rule
 * that a value for an identity column GENERATED ALWAYS is taken.  COPY's
 * own defaults are switched off (num_defaults = 0) so that the INSERT
 * evaluates each default once, as COPY would.  An error aborts the
 * statement: nothing of the COPY stays (on Citus, the distributed
 * transaction rolls back on every node).  Its context names the table and
 * line, never a value (PostgreSQL's CopyFromErrorCallback prints the
 * line's text, which here would be protected data).
 *
 * A protected Citus table itself (on the coordinator, or on a worker with
 * the metadata) is left to Citus, with one change: Citus would load the
 * shards that the node running the COPY holds itself by calling CopyFrom
 * directly (local execution, commands/local_multi_copy.c), which checks no
 * row security at all.  So the handler turns citus.enable_local_execution
 * off for the statement: Citus then sends those shards' rows over a
 * connection like any other, and this handler, in that connection's
 * backend, loads them under the policies.  In a transaction that has
 * already executed locally Citus must go on doing so; such a COPY is
 * refused.
 *
 * The same local copy serves an INSERT ... SELECT or MERGE that Citus
 * runs through this node (its "Citus INSERT ... SELECT" and "Citus MERGE
 * INTO ..." scans); copyload_ExecutorStart turns local execution off for
 * the rest of the transaction when their target is a protected Citus
 * table whose row security applies.
 *
 * Differences from PostgreSQL's COPY: statement-level triggers fire once
 * per row (each row is an INSERT statement), and loading is slower (one
 * executor run per row).  Privileges are those of the INSERT: the listed
 * columns, as COPY.
 *
 * Everything else - FROM a file or PROGRAM, WHERE, FREEZE, a table vecphi
 * does not protect, a user row security does not apply to (superuser,
 * owner, BYPASSRLS) - falls through unchanged to Citus or PostgreSQL.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/copy.h"
#include "commands/copyfrom_internal.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "nodes/extensible.h"
#include "nodes/plannodes.h"
#include "parser/parse_node.h"
#include "storage/lmgr.h"
#include "tcop/cmdtag.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"

#include "citus.h"
#include "hooks.h"
#include "copyload.h"
#include "protectint.h"

static int	utility_slot;		/* of copyload_ProcessUtility (hooks.h) */
static ExecutorStart_hook_type prev_ExecutorStart = NULL;

/* What the handler does with a COPY. */
typedef enum CopyLoadMode
{
	COPYLOAD_PASS,				/* not ours: to Citus or PostgreSQL */
	COPYLOAD_INSERT,			/* rows as INSERTs, here */
	COPYLOAD_CITUS_REMOTE		/* to Citus, without local execution */
} CopyLoadMode;

/* What the error context callback says of the row being loaded. */
typedef struct CopyLoadErrorArg
{
	const char *relname;
	CopyFromState cstate;
} CopyLoadErrorArg;

/* Is any option of the COPY one this handler leaves to PostgreSQL? */
static bool
copyload_has_option(List *options, const char *name)
{
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, name) == 0)
			return true;
	}
	return false;
}

/*
 * What to do with a COPY statement; for COPYLOAD_INSERT *relid_out is the
 * table it loads, locked as COPY locks it.
 */
static CopyLoadMode
copyload_mode(CopyStmt * stmt, Oid *relid_out)
{
	Oid			relid;
	char		relkind;

	*relid_out = InvalidOid;
	if (!stmt->is_from || stmt->filename != NULL || stmt->is_program ||
		stmt->relation == NULL || stmt->query != NULL ||
		stmt->whereClause != NULL || copyload_has_option(stmt->options, "freeze"))
		return COPYLOAD_PASS;
	if (!IsTransactionState())
		return COPYLOAD_PASS;
	relid = RangeVarGetRelid(stmt->relation, RowExclusiveLock, true);
	if (!OidIsValid(relid))
		return COPYLOAD_PASS;
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		return COPYLOAD_PASS;
	if (check_enable_rls(relid, InvalidOid, false) != RLS_ENABLED)
		return COPYLOAD_PASS;
	if (!protect_rel_is_protected(relid))
		return COPYLOAD_PASS;
	if (vecphi_citus_is_table(relid))
		return COPYLOAD_CITUS_REMOTE;
	*relid_out = relid;
	return COPYLOAD_INSERT;
}

/* Error context of a row: the table and the line, never a value. */
static void
copyload_error_callback(void *arg)
{
	CopyLoadErrorArg *e = (CopyLoadErrorArg *) arg;

	if (e->cstate != NULL && e->cstate->cur_lineno > 0)
		errcontext("COPY %s (as INSERT under row-level security), line " UINT64_FORMAT,
				   e->relname, e->cstate->cur_lineno);
	else
		errcontext("COPY %s (as INSERT under row-level security)", e->relname);
}

/* Load the rows of COPY stmt into relid with INSERTs; the row count. */
static uint64
copyload_run(Oid relid, CopyStmt * stmt, const char *queryString)
{
	Relation	rel = table_open(relid, NoLock);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	List	   *attnums = CopyGetAttnums(tupdesc, rel, stmt->attlist);
	int			ncols = list_length(attnums);
	ParseState *pstate = make_parsestate(NULL);
	CopyLoadErrorArg errarg;
	ErrorContextCallback errcb;
	CopyFromState cstate;
	StringInfoData sql;
	Oid		   *argtypes;
	Datum	   *args;
	char	   *argnulls;
	Datum	   *values;
	bool	   *nulls;
	ExprContext *econtext;
	MemoryContext rowcxt;
	MemoryContext oldcxt;
	SPIPlanPtr	plan;
	ListCell   *lc;
	uint64		processed = 0;
	int			i;

	pstate->p_sourcetext = queryString;

	/* INSERT INTO schema.rel (cols) OVERRIDING SYSTEM VALUE VALUES ($1..) */
	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO %s.%s (",
					 quote_identifier(get_namespace_name(RelationGetNamespace(rel))),
					 quote_identifier(RelationGetRelationName(rel)));
	argtypes = palloc(sizeof(Oid) * Max(ncols, 1));
	i = 0;
	foreach(lc, attnums)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, lfirst_int(lc) - 1);

		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", quote_identifier(NameStr(att->attname)));
		argtypes[i++] = att->atttypid;
	}
	if (ncols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY FROM with no columns is not supported under row-level security"),
				 errdetail("Table \"%s\" is protected by vecphi; list at least one column.",
						   RelationGetRelationName(rel))));
	appendStringInfoString(&sql, ") OVERRIDING SYSTEM VALUE VALUES (");
	for (i = 0; i < ncols; i++)
		appendStringInfo(&sql, "%s$%d", i > 0 ? ", " : "", i + 1);
	appendStringInfoChar(&sql, ')');

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(sql.data, ncols, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for the COPY of \"%s\": %s",
			 RelationGetRelationName(rel), SPI_result_code_string(SPI_result));

	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, NULL,
						   stmt->attlist, stmt->options);
	/* Let the INSERT evaluate the defaults of the columns not listed. */
	cstate->num_defaults = 0;

	errarg.relname = RelationGetRelationName(rel);
	errarg.cstate = cstate;
	errcb.callback = copyload_error_callback;
	errcb.arg = &errarg;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	values = palloc(sizeof(Datum) * tupdesc->natts);
	nulls = palloc(sizeof(bool) * tupdesc->natts);
	args = palloc(sizeof(Datum) * ncols);
	argnulls = palloc(sizeof(char) * ncols);
	econtext = CreateStandaloneExprContext();
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "vecphi COPY row",
								   ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		int			rc;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(rowcxt);
		oldcxt = MemoryContextSwitchTo(rowcxt);
		if (!NextCopyFrom(cstate, econtext, values, nulls))
		{
			MemoryContextSwitchTo(oldcxt);
			break;
		}
		i = 0;
		foreach(lc, attnums)
		{
			int			attno = lfirst_int(lc);

			args[i] = values[attno - 1];
			argnulls[i] = nulls[attno - 1] ? 'n' : ' ';
			i++;
		}
		rc = SPI_execute_plan(plan, args, argnulls, false, 0);
		MemoryContextSwitchTo(oldcxt);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "INSERT of the COPY into \"%s\" failed: %s",
				 RelationGetRelationName(rel), SPI_result_code_string(rc));
		processed += SPI_processed;
	}

	error_context_stack = errcb.previous;
	EndCopyFrom(cstate);
	FreeExprContext(econtext, true);
	MemoryContextDelete(rowcxt);
	SPI_finish();
	table_close(rel, NoLock);
	return processed;
}

/*
 * Keep Citus from loading this node's shards of a protected table with its
 * local copy (CopyFrom without row security): local execution off, as
 * action (GUC_ACTION_SAVE: for a statement, the caller restores it;
 * GUC_ACTION_LOCAL: to the end of the transaction).  Refused when the
 * transaction has executed locally already, as Citus must then go on.
 */
static void
copyload_no_local_copy(const char *relname, GucAction action)
{
	if (vecphi_citus_local_execution_required())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("bulk load into protected table \"%s\" after local execution in this transaction is not supported",
						relname),
				 errdetail("Citus would load this node's shards of the table without row-level security."),
				 errhint("Run the COPY or INSERT ... SELECT in a transaction of its own, or first in its transaction.")));
	(void) set_config_option("citus.enable_local_execution", "off",
							 PGC_USERSET, PGC_S_SESSION, action, true, 0, false);
}

/*
 * An INSERT ... SELECT or MERGE that Citus runs through this node (its
 * custom scans below) loads the target's shards with its COPY machinery,
 * the node's own shards by local copy.  When the target is a protected
 * Citus table whose row security applies, turn local execution off for
 * the rest of the transaction (the scan runs after ExecutorStart; a
 * statement-long setting could not be restored on every path), so those
 * rows go through a connection and copyload_ProcessUtility on the shard.
 */
static void
copyload_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *pstmt = queryDesc->plannedstmt;

	if ((pstmt->commandType == CMD_INSERT || pstmt->commandType == CMD_MERGE) &&
		pstmt->planTree != NULL && IsA(pstmt->planTree, CustomScan) &&
		!(eflags & EXEC_FLAG_EXPLAIN_ONLY))
	{
		CustomScan *scan = (CustomScan *) pstmt->planTree;
		const char *name = scan->methods ? scan->methods->CustomName : NULL;

		if (name != NULL &&
			(strcmp(name, "Citus INSERT ... SELECT") == 0 ||
			 strcmp(name, "Citus MERGE INTO ...") == 0))
		{
			ListCell   *lc;

			foreach(lc, pstmt->rtable)
			{
				RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

				if (rte->rtekind != RTE_RELATION ||
					!(rte->requiredPerms & (ACL_INSERT | ACL_UPDATE)))
					continue;
				if (vecphi_citus_is_table(rte->relid) &&
					check_enable_rls(rte->relid, InvalidOid, false) == RLS_ENABLED &&
					protect_rel_is_protected(rte->relid))
				{
					copyload_no_local_copy(get_rel_name(rte->relid), GUC_ACTION_LOCAL);
					break;
				}
			}
		}
	}
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/* Take over a COPY FROM STDIN that row security would refuse (above). */
static void
copyload_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
						bool readOnlyTree, ProcessUtilityContext context,
						ParamListInfo params, QueryEnvironment * queryEnv,
						DestReceiver *dest, QueryCompletion * qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (IsA(parsetree, CopyStmt))
	{
		CopyStmt   *stmt = (CopyStmt *) parsetree;
		Oid			relid;
		CopyLoadMode mode = copyload_mode(stmt, &relid);

		if (mode == COPYLOAD_INSERT)
		{
			uint64		processed;

			PreventCommandIfReadOnly("COPY FROM");
			processed = copyload_run(relid, stmt, queryString);
			if (qc)
				SetQueryCompletion(qc, CMDTAG_COPY, processed);
			return;
		}
		if (mode == COPYLOAD_CITUS_REMOTE)
		{
			int			nestlevel = NewGUCNestLevel();

			copyload_no_local_copy(stmt->relation->relname, GUC_ACTION_SAVE);
			utility_next(utility_slot, pstmt, queryString, readOnlyTree, context,
						 params, queryEnv, dest, qc);
			AtEOXact_GUC(true, nestlevel);
			return;
		}
	}
	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context,
				 params, queryEnv, dest, qc);
}

void
copyload_init(void)
{
	utility_slot = utility_register(copyload_ProcessUtility);
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = copyload_ExecutorStart;
}
