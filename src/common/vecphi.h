/*-------------------------------------------------------------------------
 *
 * vecphi.h
 *	  Declarations shared by every part of vecphi: limits and settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_H
#define VECPHI_H

/* Same ceiling as pgvector's vector type. */
#define VECPHI_MAX_DIM 16000

/* Tenant names become file names and %t in vecphi.kek_command. */
#define VECPHI_TENANT_NAME_MAX 63

/* Settings (vecphi.c) */
extern char *vecphi_key_directory;
extern char *vecphi_kek_command;
extern char *vecphi_jwt_secret_file;
extern char *vecphi_jwt_public_key_file;
extern int	vecphi_max_scan_rows;
extern char *vecphi_kek_destroy_command;

extern bool vecphi_tenant_name_is_valid(const char *name);

#endif							/* VECPHI_H */
