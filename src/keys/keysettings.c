/*-------------------------------------------------------------------------
 *
 * keysettings.c
 *	  The key provider's settings, registered by the keys layer itself.
 *
 * Kept apart from keys.c only until keys.c moves into this folder (issue
 * #13: keys.c was being changed on another branch when src/ was split into
 * layers); keys_settings_init() then becomes part of keys_init().
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
