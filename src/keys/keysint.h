/*-------------------------------------------------------------------------
 *
 * keysint.h
 *	  What the files of the keys layer share (keys.c, keyprovider.c,
 *	  keyadmin.c); nothing outside src/keys/ includes it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_KEYSINT_H
#define VECPHI_KEYSINT_H

#include "crypto.h"

#define KEYRING_ID_LEN 16		/* hex digits */

/*
 * Key actions the current transaction left for its end.  A file it created
 * is destroyed if the (sub)transaction that created it aborts; a file it
 * superseded is destroyed when the top-level transaction commits; a KEK at
 * a vecphi.kek_command provider is destroyed by vecphi.kek_destroy_command
 * just before the commit.  An action is forgotten if the (sub)transaction
 * that asked for it aborts.
 */
typedef enum PendingKeyKind
{
	PENDING_CREATED,			/* file: destroy at abort */
	PENDING_SUPERSEDED,			/* file: destroy after commit */
	PENDING_DESTROY_COMMAND		/* provider KEK: destroy before commit */
} PendingKeyKind;

/* keys.c: the catalog */
extern Oid	keys_table_oid(const char *relname);
extern void keys_tenant_shredded_error(const char *tenant);
extern bool keys_keyring_id_is_valid(const char *s);

/* keyprovider.c: providers and key files */
extern void keys_provider_check_config(void);
extern bool keys_provider_is_embedded(void);
extern void keys_directory_check(void);
extern char *keys_kek_file_path(const char *keyring_id, const char *tenant,
								uint32 kek_version);
extern char *keys_owner_path(const char *keyring_id);
extern void keys_owner_write(const char *keyring_id);
extern void keys_owner_check(const char *keyring_id, bool for_admin);
extern void keys_kek_fetch(const char *keyring_id, const char *tenant,
						   uint32 kek_version, uint8 *kek);
extern void keys_kek_read_file(const char *tenant, const char *path,
							   uint8 *kek);
extern void keys_kek_write_file(const char *path, const uint8 *kek);
extern void keys_kek_create_file(const char *keyring_id, const char *tenant,
								 uint32 kek_version, bool adopt_existing,
								 uint8 *kek);
extern void keys_kek_run_command(const char *keyring_id, const char *tenant,
								 uint32 kek_version, uint8 *kek);

/* keyprovider.c: key actions left for the end of the transaction */
extern void keys_pending_add(PendingKeyKind kind, const char *path,
							 const char *keyring_id, uint32 kek_version);
extern void keys_pending_file_add(const char *path, bool superseded);
extern bool keys_pending_files_of(const char *keyring_id, const char *tenant);
extern void keys_pending_init(void);

#endif							/* VECPHI_KEYSINT_H */
