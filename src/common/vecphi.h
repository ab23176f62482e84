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

#endif							/* VECPHI_H */
