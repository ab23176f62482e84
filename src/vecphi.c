/*-------------------------------------------------------------------------
 *
 * vecphi.c
 *	  Module entry point: settings and the start-up of every part.
 *
 * vecphi must be in shared_preload_libraries: key loading and (in later
 * versions) the audit writer start with the server, and settings that
 * weaken protection must not be changeable by loading the library late.
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
#include "ehnsw.h"
#include "keys.h"
#include "protectddl.h"
#include "scrub.h"
#include "vecphi.h"

PG_MODULE_MAGIC;

char	   *vecphi_key_directory = NULL;
char	   *vecphi_kek_command = NULL;
char	   *vecphi_jwt_secret_file = NULL;
char	   *vecphi_jwt_public_key_file = NULL;
int			vecphi_max_scan_rows = 0;
char	   *vecphi_kek_destroy_command = NULL;

void		_PG_init(void);

/*
 * Tenant names: 1..63 of [A-Za-z0-9_-], not starting with "-": safe as file
 * names, as one shell word, and never taken for an option by a key
 * provider's command.  A leading "_" is allowed: no shell, getopt or file
 * system gives it a meaning.
 */
bool
vecphi_tenant_name_is_valid(const char *name)
{
	size_t		len = strlen(name);
	size_t		i;

	if (len == 0 || len > VECPHI_TENANT_NAME_MAX || name[0] == '-')
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("vecphi must be loaded via shared_preload_libraries"),
				 errhint("Add vecphi to shared_preload_libraries in postgresql.conf and restart the server.")));

	DefineCustomStringVariable("vecphi.key_directory",
							   "Directory of the embedded key provider: one KEK file per tenant.",
							   "Must be outside the data directory, owned by the server's user, mode 0700.",
							   &vecphi_key_directory,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.kek_command",
							   "Command printing a tenant's KEK as 64 hex digits (%t tenant, %v version).",
							   "Alternative to vecphi.key_directory, for a KMS.",
							   &vecphi_kek_command,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.jwt_secret_file",
							   "File holding the HS256 secret that signs claim tokens.",
							   "Surrounding white space is trimmed; at least 32 bytes.",
							   &vecphi_jwt_secret_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.jwt_public_key_file",
							   "PEM public key that verifies ES256 or RS256 claim tokens.",
							   "Only the server's user may be able to write it.",
							   &vecphi_jwt_public_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.max_scan_rows",
							"Most rows one similarity scan may return to a claimant (0: no limit).",
							"A minimum-necessary control and a brake on extracting a tenant's data by nearest-neighbour walking.",
							&vecphi_max_scan_rows,
							0, 0, INT_MAX,
							PGC_SUSET, GUC_NO_RESET_ALL,
							NULL, NULL, NULL);
	ehnsw_init();
	claims_init();
	audit_init();

	/* Erasure (issue #6): scrub after VACUUM, crypto-shredding hook. */
	DefineCustomBoolVariable("vecphi.scrub_on_vacuum",
							 "Zero what deleted rows leave in heap and TOAST pages after VACUUM.",
							 "Turning it off leaves deleted ciphertext in page free space; for measurements only.",
							 &vecphi_scrub_on_vacuum,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.kek_destroy_command",
							   "Command destroying a tenant's KEK at a vecphi.kek_command provider (%t tenant, %v version).",
							   "Run by vecphi.shred_tenant(); must exit 0 only once the key is gone.",
							   &vecphi_kek_destroy_command,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	scrub_init();
	binding_init();

	/* Owner code on protected tables (issue #11, section 3). */
	protectddl_init();

	MarkGUCPrefixReserved("vecphi");

	keys_init();
}
