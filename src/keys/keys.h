/*-------------------------------------------------------------------------
 *
 * keys.h
 *	  Tenants, their key-encryption keys at the provider and their data
 *	  keys in vecphi.keyring.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_KEYS_H
#define VECPHI_KEYS_H

#include "crypto.h"

/* An unwrapped data key, cached for the life of the backend. */
typedef struct DataKey
{
	uint32		tenant_id;
	uint32		dek_version;
	VecphiAead *aead;			/* scheduled key; the raw bytes are wiped */
} DataKey;

extern uint32 keys_tenant_id(const char *tenant, bool missing_ok);
extern char *keys_tenant_name(uint32 tenant_id);
extern bool keys_tenant_is_shredded(uint32 tenant_id);
extern DataKey *keys_current_dek(uint32 tenant_id);
extern DataKey *keys_get_dek(uint32 tenant_id, uint32 dek_version);
extern bool keys_dek_exists(uint32 tenant_id, uint32 dek_version);
extern DataKey *keys_cached_dek(uint32 tenant_id, uint32 dek_version);
extern void keys_init(void);

/* keysync.c: keys across a Citus cluster */
extern void keysync_require_coordinator(const char *what);
extern void keysync_tenant(uint32 tenant_id);

#endif							/* VECPHI_KEYS_H */
