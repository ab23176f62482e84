/*-------------------------------------------------------------------------
 *
 * keysettings.c
 *	  The key provider's settings, registered by the keys layer itself.
 *
 * Registered by keys_settings_init(), not keys_init(), because the two run
 * at different points of _PG_init(): the settings must exist before
 * MarkGUCPrefixReserved("vecphi") (which would otherwise drop the values
 * postgresql.conf gave them), while keys_init() runs last so that the keys'
 * transaction callbacks, registered there, run before every other
 * module's (PostgreSQL calls them newest first): a kek_destroy_command
 * runs at pre-commit before the audit's and the others' callbacks, as it
 * always has.  The audit reads vecphi.key_directory too (its default key
 * file lives there), so the settings keep a header of their own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "keysettings.h"

char	   *vecphi_key_directory = NULL;
char	   *vecphi_kek_command = NULL;
char	   *vecphi_kek_destroy_command = NULL;

/* Register the key provider's settings (from _PG_init). */
void
keys_settings_init(void)
{
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
	DefineCustomStringVariable("vecphi.kek_destroy_command",
							   "Command destroying a tenant's KEK at a vecphi.kek_command provider (%t tenant, %v version).",
							   "Run by vecphi.shred_tenant(); must exit 0 only once the key is gone.",
							   &vecphi_kek_destroy_command,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
}
