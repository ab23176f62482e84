/*-------------------------------------------------------------------------
 *
 * protectint.h
 *	  What the protected-DDL check (protectddl.c) and the security state
 *	  of a table (protectstate.c) share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_PROTECTINT_H
#define VECPHI_PROTECTINT_H

#include "nodes/pg_list.h"

/* The security state of one protected table. */
typedef struct ProtectedState
{
	Oid			relid;
	char	   *relname;
	List	   *guard;			/* char *: vecphi's protection */
	List	   *code;			/* char *: owner code */
} ProtectedState;

typedef struct ExprCheck
{
	bool		in_default;		/* column default: a few volatile built-ins */
	int			depth;
} ExprCheck;

/* protectstate.c, for protectddl.c (which sits above it) */
extern bool protect_func_is_vecphi(Oid funcid);
extern bool protect_rel_is_protected(Oid relid);
extern void protect_relation_state(Oid relid, bool for_protect, List **guard, List **code);
extern List *protect_protected_states(void);
extern ProtectedState *protect_find_state(List *states, Oid relid);

#endif							/* VECPHI_PROTECTINT_H */
