/*-------------------------------------------------------------------------
 *
 * ehnswsettings.c
 *	  The ehnsw settings (vecphi.ef_search, vecphi.scan_budget) and the
 *	  developer-only pause points the isolation specs use.
 *
 * Kept apart from ehnsw.c, the access method's handler, so that the
 * phases (scan, insert, VACUUM) read their settings from a file below
 * them rather than from the handler that calls them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/guc.h"

#include "ehnsw.h"

int			ehnsw_ef_search = EHNSW_DEFAULT_EF_SEARCH;
int			ehnsw_scan_budget = EHNSW_DEFAULT_SCAN_BUDGET;
int			ehnsw_debug_vacuum_pause_lock = 0;
int			ehnsw_debug_insert_pause_lock = 0;
int			ehnsw_debug_insert_level = -1;

/* Called once from ehnsw_init(). */
void
ehnsw_settings_init(void)
{
	DefineCustomIntVariable("vecphi.ef_search",
							"Size of the candidate list of an ehnsw index search.",
							"Larger finds nearer neighbours more reliably and costs more.",
							&ehnsw_ef_search,
							EHNSW_DEFAULT_EF_SEARCH, EHNSW_MIN_EF_SEARCH,
							EHNSW_MAX_EF_SEARCH,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.scan_budget",
							"Most index elements an ehnsw scan examines after its first ef_search rows.",
							"When a filter or row-level security discards rows, the scan goes on until LIMIT is met or this many more elements were examined; 0 stops after ef_search rows.",
							&ehnsw_scan_budget,
							EHNSW_DEFAULT_SCAN_BUDGET, 0, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);

	/*
	 * Developer-only hooks for the isolation specs (PostgreSQL 15 has no
	 * injection points): superuser-only, hidden, and inert at their defaults.
	 * See docs/testing.md.
	 */
	DefineCustomIntVariable("vecphi.debug_ehnsw_vacuum_pause_lock",
							"Developer only: ehnsw VACUUM waits on this advisory lock key before repairing the graph, and on the next key before freeing space.",
							"0 (the default) never waits.",
							&ehnsw_debug_vacuum_pause_lock,
							0, 0, INT_MAX - 1,
							PGC_SUSET, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.debug_ehnsw_insert_pause_lock",
							"Developer only: an ehnsw insert waits on this advisory lock key once it holds the update lock.",
							"0 (the default) never waits.",
							&ehnsw_debug_insert_pause_lock,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.debug_ehnsw_insert_level",
							"Developer only: the level of new ehnsw elements instead of a random one.",
							"-1 (the default) draws it at random, as HNSW does.",
							&ehnsw_debug_insert_level,
							-1, -1, EHNSW_MAX_LEVEL,
							PGC_SUSET, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL,
							NULL, NULL, NULL);
}

/*
 * Wait until nobody holds the advisory lock key (int8 form, as
 * pg_advisory_lock(key) takes it) in exclusive mode: take it shared and
 * let go at once.  Key 0 does nothing.  Called only between lock-free
 * stretches of the code or with just the heavyweight update lock held,
 * never with a buffer lock.
 */
void
ehnsw_debug_pause(int key)
{
	LOCKTAG		tag;

	if (key == 0)
		return;
	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0, (uint32) key, 1);
	(void) LockAcquire(&tag, ShareLock, false, false);
	LockRelease(&tag, ShareLock, false);
}
