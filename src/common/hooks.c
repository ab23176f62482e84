/*-------------------------------------------------------------------------
 *
 * hooks.c
 *	  The ProcessUtility dispatcher (see hooks.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "hooks.h"

/* claims, audit, scrub, binding catalog, protected DDL, migration: six. */
#define UTILITY_MAX_HANDLERS 8

static ProcessUtility_hook_type utility_handlers[UTILITY_MAX_HANDLERS];
static int	utility_nhandlers = 0;
static bool utility_installed = false;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Add a handler (from a module's *_init()); returns its slot. */
int
utility_register(ProcessUtility_hook_type handler)
{
	if (utility_installed || utility_nhandlers >= UTILITY_MAX_HANDLERS)
		elog(ERROR, "vecphi: cannot register another ProcessUtility handler");
	utility_handlers[utility_nhandlers] = handler;
	return utility_nhandlers++;
}

/* Pass the statement on from the handler in slot to the next one. */
void
utility_next(int slot, PlannedStmt * pstmt, const char *queryString,
			 bool readOnlyTree, ProcessUtilityContext context,
			 ParamListInfo params, QueryEnvironment * queryEnv,
			 DestReceiver *dest, QueryCompletion * qc)
{
	Assert(slot >= 0 && slot < utility_nhandlers);
	if (slot > 0)
		utility_handlers[slot - 1] (pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	else if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* vecphi's one ProcessUtility_hook: the last registered handler first. */
static void
vecphi_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment * queryEnv,
					  DestReceiver *dest, QueryCompletion * qc)
{
	if (utility_nhandlers > 0)
		utility_handlers[utility_nhandlers - 1] (pstmt, queryString,
												 readOnlyTree, context,
												 params, queryEnv, dest, qc);
	else if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
							params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/* Install the hook once every module has registered (_PG_init). */
void
utility_install(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = vecphi_ProcessUtility;
	utility_installed = true;
}
