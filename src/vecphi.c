/*-------------------------------------------------------------------------
 *
 * vecphi.c
 *	  Module entry point: wires the layers together at server start.
 *
 * vecphi must be in shared_preload_libraries: key loading and the audit
 * writer start with the server, and settings that weaken protection must
 * not be changeable by loading the library late.  Each module registers
 * its own settings and hooks in its *_init(); the order below is the order
 * the hooks nest in (a later module's hook runs first; ProcessUtility
 * handlers go through the one dispatcher of common/hooks.h), and keys_init()
 * comes last, once every vecphi.* setting is defined and the prefix is
 * reserved.  The layers and what each may call: docs/architecture.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "audit.h"
#include "binding.h"
#include "claims.h"
#include "copyload.h"
#include "ehnsw.h"
#include "hooks.h"
#include "keys.h"
#include "keysettings.h"
#include "migrate.h"
#include "protectddl.h"
#include "scrub.h"
#include "stats.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("vecphi must be loaded via shared_preload_libraries"),
				 errhint("Add vecphi to shared_preload_libraries in postgresql.conf and restart the server.")));

	keys_settings_init();		/* keys: provider settings */
	stats_init();				/* monitoring counters: vecphi.stat_max */
	ehnsw_init();				/* index AM: ef_search */
	copyload_init();			/* protect: COPY FROM under row security (runs
								 * last) */
	claims_init();				/* claims: token settings and hooks */
	audit_init();				/* audit: settings, hooks, writer, sink */
	scrub_init();				/* erasure: scrub after VACUUM */
	binding_init();				/* protect: binding catalog hook */
	protectddl_init();			/* protect: owner code on protected tables */
	migrate_init();				/* migrate: refuse one-key table rewrites */
	utility_install();			/* the one ProcessUtility hook (hooks.h) */

	MarkGUCPrefixReserved("vecphi");

	/*
	 * Last: the keys' transaction callbacks then run before the others'
	 * (keysettings.c says why its settings are registered first).
	 */
	keys_init();				/* keys: shared state of the keyring */
}
