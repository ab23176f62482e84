/*-------------------------------------------------------------------------
 *
 * auditsettings.c
 *	  The audit's settings (vecphi.audit, vecphi.audit_synchronous,
 *	  vecphi.audit_timeout, vecphi.audit_retention, vecphi.audit_key_file,
 *	  vecphi.audit_queue_size).
 *
 * The bottom of the audit module: every other audit file reads these, and
 * this file calls none of them.  Registered by audit_init() (audit.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "auditint.h"

bool		vecphi_audit_enabled = true;
bool		vecphi_audit_synchronous = true;
int			vecphi_audit_timeout_ms = 10000;
int			vecphi_audit_queue_kb = 1024;
int			vecphi_audit_retention_min = 7 * 365 * 24 * 60 + 2 * 24 * 60;
char	   *vecphi_audit_key_file = NULL;

void
audit_settings_init(void)
{
	DefineCustomBoolVariable("vecphi.audit",
							 "Record similarity scans, decryptions, denials, key events and erasures in vecphi.audit_log.",
							 "Turning it off weakens protection; only superusers can.",
							 &vecphi_audit_enabled,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("vecphi.audit_synchronous",
							 "Withhold result rows until their audit records are committed.",
							 "Off: records are queued and committed shortly after, and a crash can lose the last ones.",
							 &vecphi_audit_synchronous,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.audit_timeout",
							"How long a statement waits for its audit record before failing.",
							NULL,
							&vecphi_audit_timeout_ms,
							10000, 100, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.audit_retention",
							"Age after which vecphi.purge_audit() removes audit rows.",
							"Default 7 years.",
							&vecphi_audit_retention_min,
							7 * 365 * 24 * 60 + 2 * 24 * 60, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MIN,
							NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.audit_key_file",
							   "File with the key of the audit hash chain (64 hex digits).",
							   "Empty: audit.key in vecphi.key_directory, created by the first audit writer of a primary.",
							   &vecphi_audit_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.audit_queue_size",
							"Shared memory for queued audit records, per database.",
							NULL,
							&vecphi_audit_queue_kb,
							1024, 64, 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_KB,
							NULL, NULL, NULL);
}
