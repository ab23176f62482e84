/*-------------------------------------------------------------------------
 *
 * vecphi.h
 *	  Limits shared by every part of vecphi, and the tenant-name rule.
 *
 * Settings are not here: each module registers and declares its own (its
 * *_init(), its header).
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_H
#define VECPHI_H

/* Same ceiling as pgvector's vector type. */
#define VECPHI_MAX_DIM 16000

/* Tenant names become file names and %t in vecphi.kek_command. */
#define VECPHI_TENANT_NAME_MAX 63

/* common/tenant.c */
extern bool vecphi_tenant_name_is_valid(const char *name);

/*
 * Temporary (issue #13): src/keys.c reads the key provider's settings
 * through this header and is not edited until it moves to src/keys/, where
 * it will include keysettings.h itself.  The one upward include of
 * common/, allowlisted in test/tools/layers.sh.
 */
#include "keysettings.h"

#endif							/* VECPHI_H */
