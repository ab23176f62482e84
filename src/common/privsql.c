/*-------------------------------------------------------------------------
 *
 * privsql.c
 *	  Privileged SQL: the statements vecphi runs as a user other than the
 *	  caller (the owner of its internal tables), or inside a SECURITY
 *	  DEFINER function, or in its background worker.
 *
 * The danger.  SQL text names functions, operators, casts and types, and
 * the parser looks each unqualified name up in search_path, which the
 * caller controls: a role that owns a schema, or any role at all through
 * pg_temp (searched first for relations and types unless search_path
 * names it), can plant "=" or count() or a domain called text there and
 * have it run with the privileges of whoever runs the statement.  A
 * background worker inherits the search_path that its database's owner
 * set with ALTER DATABASE ... SET.
 *
 * The rules (docs/security.md, "Privileged code paths"):
 *	- every statement runs between privsql_begin() and privsql_end(), which
 *	  pin search_path to PRIVSQL_SEARCH_PATH (at a new GUC nest level, undone
 *	  at the end and on error), switch to the user the statement must run as
 *	  with SECURITY_RESTRICTED_OPERATION, push a snapshot when none is
 *	  active, and connect SPI;
 *	- and its text qualifies every function, operator (OPERATOR(pg_catalog.=)),
 *	  cast and type with pg_catalog, and every relation with its schema, so
 *	  that even a pinned search_path is not what keeps it safe;
 *	- a background worker calls privsql_pin_worker() once after it
 *	  connects.
 *
 * On error, privsql_execute() gives back the caller's user and search_path
 * before the error propagates, so error callbacks and the audit's error
 * hook see the caller, not the owner; the (sub)transaction abort then
 * closes the SPI connection and pops the snapshot.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "privsql.h"

/*
 * Start a privileged section: as as_user (InvalidOid: the current user, as
 * in a SECURITY DEFINER function), search_path pinned, a snapshot, SPI.
 */
void
privsql_begin(PrivSql *ps, Oid as_user)
{
	GetUserIdAndSecContext(&ps->save_userid, &ps->save_sec);
	ps->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", PRIVSQL_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (OidIsValid(as_user) && as_user != ps->save_userid)
		SetUserIdAndSecContext(as_user,
							   ps->save_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
	ps->pushed_snapshot = false;
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		ps->pushed_snapshot = true;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "vecphi: SPI_connect failed");
}

/* Give back the caller's user and search_path. */
static void
privsql_restore(PrivSql *ps, bool ok)
{
	if (ps->guc_level == 0)
		return;
	SetUserIdAndSecContext(ps->save_userid, ps->save_sec);
	AtEOXact_GUC(ok, ps->guc_level);
	ps->guc_level = 0;
}

/*
 * Run one statement of a privileged section (SPI_execute_with_args); the
 * caller reads SPI_processed and SPI_tuptable before privsql_end().
 */
int
privsql_execute(PrivSql *ps, const char *sql, int nargs, Oid *argtypes,
				Datum *values, bool read_only, long count)
{
	int			rc = 0;

	Assert(ps->guc_level > 0);
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql, nargs, argtypes, values, NULL,
								   read_only, count);
	}
	PG_CATCH();
	{
		privsql_restore(ps, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return rc;
}

/* End a privileged section: SPI, snapshot, user and search_path. */
void
privsql_end(PrivSql *ps)
{
	SPI_finish();
	if (ps->pushed_snapshot)
		PopActiveSnapshot();
	privsql_restore(ps, true);
}

/*
 * Pin the settings a background worker's statements depend on, over what
 * the database's owner may have set with ALTER DATABASE ... SET: the
 * search_path, and the settings that would make its writes fail.
 */
void
privsql_pin_worker(void)
{
	SetConfigOption("search_path", PRIVSQL_SEARCH_PATH, PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
}
