/*-------------------------------------------------------------------------
 *
 * keyfile.c
 *	  One rule for key material on disk, used by every reader of a key,
 *	  and the readers of small key files.
 *
 * Whoever can replace a verification key can sign tokens, and whoever can
 * read a secret can sign tokens or unwrap data keys.  So every key file
 * and the key directory must be owned by the server's OS user; nobody
 * else may write them; secrets (HS256 secret, KEK files, the audit-chain
 * key) nobody else may read either.  A file that breaks the rule is
 * refused, not used with a warning: the error names the file and the
 * command that fixes it.  Checks are made on the open descriptor
 * (fstat), so the file judged is the file read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"

#include "crypto.h"
#include "keyfile.h"

/* Why st is not acceptable for kind, or NULL when it is. */
const char *
keyfile_unsafe_reason(const struct stat *st, VecphiKeyFileKind kind)
{
	if (kind == VECPHI_KEYFILE_DIRECTORY ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
		return kind == VECPHI_KEYFILE_DIRECTORY ?
			"It is not a directory." : "It is not a regular file.";
	if (st->st_uid != geteuid())
		return psprintf("It is owned by OS user id %u, not by the server's user (id %u).",
						(unsigned int) st->st_uid, (unsigned int) geteuid());
	if (kind == VECPHI_KEYFILE_SECRET && (st->st_mode & (S_IRWXG | S_IRWXO)) != 0)
		return psprintf("It has mode %04o; a secret must be readable and writable by its owner only (mode 0600).",
						(unsigned int) (st->st_mode & 07777));
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0)
		return psprintf("It has mode %04o; nobody but its owner may write it (mode %s or stricter).",
						(unsigned int) (st->st_mode & 07777),
						kind == VECPHI_KEYFILE_DIRECTORY ? "0700" : "0644");
	return NULL;
}

/* Raise an error unless st is acceptable for kind. */
void
keyfile_check_stat(const char *path, const struct stat *st,
				   VecphiKeyFileKind kind, const char *what)
{
	const char *reason = keyfile_unsafe_reason(st, kind);
	char		user[128];

	if (reason == NULL)
		return;
	if (!pg_get_user_name(geteuid(), user, sizeof(user)))
		snprintf(user, sizeof(user), "%u", (unsigned int) geteuid());
	ereport(ERROR,
			(errcode(ERRCODE_CONFIG_FILE_ERROR),
			 errmsg("%s \"%s\" has unsafe ownership or permissions", what, path),
			 errdetail("%s", reason),
			 errhint("As root or the server's user, run: chown %s '%s' && chmod %s '%s'",
					 user, path,
					 kind == VECPHI_KEYFILE_SECRET ? "0600" :
					 kind == VECPHI_KEYFILE_PUBLIC ? "0644" : "0700",
					 path)));
}

/* Raise an error unless the open file fd is acceptable for kind. */
void
keyfile_check_fd(int fd, const char *path, VecphiKeyFileKind kind,
				 const char *what)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat %s \"%s\": %m", what, path)));
	keyfile_check_stat(path, &st, kind, what);
}

/*
 * Open a key or head file for reading and check that it is private: a
 * regular file owned by the server's user, no access for group or others.
 * Returns -1 (errno ENOENT) when it does not exist.
 */
int
keyfile_open_private(const char *path, const char *what)
{
	struct stat st;
	int			fd;

	/* O_NONBLOCK: a FIFO planted there must not hang the caller. */
	fd = OpenTransientFile(path, O_RDONLY | O_NONBLOCK | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return -1;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open %s \"%s\": %m", what, path)));
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" is not a regular file", what, path)));
	}
	if (st.st_uid != geteuid())
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" is not owned by the server's user", what, path),
				 errhint("Run: chown to the user the server runs as, and chmod 0600 \"%s\".", path)));
	}
	if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		CloseTransientFile(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" is readable or writable by other users", what, path),
				 errdetail("Its mode is %04o.", (unsigned) (st.st_mode & 07777)),
				 errhint("Make it private: chmod 0600 \"%s\".", path)));
	}
	return fd;
}

/* Read a whole small file into buf (at most size - 1 bytes), terminated. */
Size
keyfile_read_small(int fd, const char *path, char *buf, Size size)
{
	Size		len = 0;

	for (;;)
	{
		ssize_t		n = read(fd, buf + len, size - 1 - len);

		if (n < 0)
		{
			if (errno == EINTR)
				continue;
			crypto_wipe(buf, size);
			CloseTransientFile(fd);
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read \"%s\": %m", path)));
		}
		if (n == 0 || len + n >= size - 1)
		{
			len += n;
			break;
		}
		len += n;
	}
	buf[len] = '\0';
	return len;
}
