/*-------------------------------------------------------------------------
 *
 * hooks.h
 *	  One dispatcher per server hook vecphi shares between modules.
 *
 * ProcessUtility: the claims, the audit, the erasure and the protection
 * modules each act around utility statements.  They register a handler in
 * their *_init(); vecphi.c installs the one ProcessUtility_hook after all
 * have registered.  The last registered handler runs first; each passes
 * the statement on with utility_next(its slot, ...), the first to the hook
 * vecphi found installed (another library's) or standard_ProcessUtility -
 * the nesting the modules had when each installed a hook of its own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_HOOKS_H
#define VECPHI_HOOKS_H

#include "tcop/utility.h"

extern int	utility_register(ProcessUtility_hook_type handler);
extern void utility_next(int slot, PlannedStmt * pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment * queryEnv,
						 DestReceiver *dest, QueryCompletion * qc);
extern void utility_install(void);

#endif							/* VECPHI_HOOKS_H */
