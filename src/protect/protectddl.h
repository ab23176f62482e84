/*-------------------------------------------------------------------------
 *
 * protectddl.h
 *	  The DDL of protected tables belongs to the security officer: the
 *	  owner of a table under vecphi.protect() may not add code that runs in
 *	  claimants' sessions (triggers, rules, policies, defaults, checks,
 *	  domain constraints, index expressions, partitions, cascading foreign
 *	  keys, replaced functions) nor weaken vecphi's row-level security.
 *	  Design in docs/security.md ("Who may change a protected table").
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_PROTECTDDL_H
#define VECPHI_PROTECTDDL_H

/* Audit action of an approved change (or a vouching protect()). */
#define AUDIT_ACTION_PROTECTED_DDL	"protected_ddl"

extern void protectddl_init(void);

#endif							/* VECPHI_PROTECTDDL_H */
