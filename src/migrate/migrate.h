/*-------------------------------------------------------------------------
 *
 * migrate.h
 *	  Migrating plaintext columns into ciphertext: the batched, per-tenant
 *	  vecphi.migrate_column() (migrate.c) and the refusal of the table
 *	  rewrites that would encrypt under one key (migrateddl.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_MIGRATE_H
#define VECPHI_MIGRATE_H

/* Audit action of a migration batch, its finish and its scrub. */
#define AUDIT_ACTION_KEY_MIGRATE	"key_migrate"

extern uint8 migrate_cipher_kind(Oid typid, Oid evector, Oid etext);
extern void migrate_init(void);

#endif							/* VECPHI_MIGRATE_H */
