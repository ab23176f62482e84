/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Shims for PostgreSQL server APIs that changed within the releases
 *	  vecphi builds against.  Every PG_VERSION_NUM test lives here.
 *
 * heap_page_prune: PostgreSQL 15.8 (the fix for the VACUUM loop after a
 * standby reconnects, backpatched to 14.13 and 15.8) added an oldest_xmin
 * argument before vistest.  Calling the old seven-argument form against
 * 15.8 or later (or the reverse) passes vistest as a TransactionId and
 * shifts every later argument; this shim picks the form of the headers
 * the extension is compiled against.  The module magic block checks only
 * the major version, so build against the server-dev headers of the minor
 * release the server runs (Debian's postgresql-server-dev-15 and
 * postgresql-15 packages move together).
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_COMPAT_H
#define VECPHI_COMPAT_H

#include "access/heapam.h"

#if PG_VERSION_NUM < 150000 || PG_VERSION_NUM >= 160000
#error "vecphi supports PostgreSQL 15 only"
#endif

/* Prune one heap page (buffer cleanup-locked) as on-access pruning does. */
static inline int
vecphi_heap_page_prune(Relation rel, Buffer buf, struct GlobalVisState *vistest,
					   int *nnewlpdead)
{
#if PG_VERSION_NUM >= 150008
	return heap_page_prune(rel, buf, InvalidTransactionId, vistest,
						   InvalidTransactionId, 0, nnewlpdead, NULL);
#else
	return heap_page_prune(rel, buf, vistest,
						   InvalidTransactionId, 0, nnewlpdead, NULL);
#endif
}

#endif							/* VECPHI_COMPAT_H */
