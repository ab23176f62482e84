/*-------------------------------------------------------------------------
 *
 * keyfile.h
 *	  Ownership and permission rules for key material on disk: the JWT
 *	  secret and public key files, vecphi.key_directory and its KEK files,
 *	  and any other key file vecphi reads (the audit-chain key).
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_KEYFILE_H
#define VECPHI_KEYFILE_H

#include <sys/stat.h>

typedef enum VecphiKeyFileKind
{
	VECPHI_KEYFILE_SECRET,		/* regular file, mode 0600 or stricter */
	VECPHI_KEYFILE_PUBLIC,		/* regular file only its owner may write */
	VECPHI_KEYFILE_DIRECTORY	/* directory only its owner may write */
} VecphiKeyFileKind;

/*
 * Every kind must be owned by the user the server runs as.  The first form
 * returns NULL when st is acceptable, else a sentence saying why not; the
 * others raise ERROR (F0000) naming the file, the problem and the chmod /
 * chown that fixes it.  what describes the file ("token secret file").
 */
extern const char *keyfile_unsafe_reason(const struct stat *st,
										 VecphiKeyFileKind kind);
extern void keyfile_check_stat(const char *path, const struct stat *st,
							   VecphiKeyFileKind kind, const char *what);
extern void keyfile_check_fd(int fd, const char *path,
							 VecphiKeyFileKind kind, const char *what);

/*
 * The audit's private files (chain key, head file): open for reading when
 * a regular file owned by the server's user with no access for group or
 * others (-1 when missing).  The audit's stricter rule keeps its own
 * messages (tests and runbooks name them).
 */
extern int	keyfile_open_private(const char *path, const char *what);

/*
 * The one reader of small key files, once opened and checked: the audit's
 * key and head file, the claims' token keys, the keys layer's KEK files and
 * keyring owner files.  Reads at most size - 1 bytes and terminates them.
 */
extern Size keyfile_read_small(int fd, const char *path, char *buf, Size size);

#endif							/* VECPHI_KEYFILE_H */
