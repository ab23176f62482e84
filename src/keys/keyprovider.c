/*-------------------------------------------------------------------------
 *
 * keyprovider.c
 *	  The KEK providers: the embedded provider's key directory, KEK files
 *	  and keyring owner files, and vecphi.kek_command /
 *	  vecphi.kek_destroy_command; and the key actions a transaction leaves
 *	  for its end (files to destroy at abort or after commit, provider KEKs
 *	  to destroy before commit), with the transaction callbacks that carry
 *	  them out.  See keys.c for the key hierarchy as a whole.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "utils/memutils.h"

#include "crypto.h"
#include "keyfile.h"
#include "keysettings.h"
#include "keysint.h"
#include "stats.h"
#include "vecphi.h"

#define KEK_HEX_LEN (VECPHI_KEY_LEN * 2)

typedef struct PendingKeyFile
{
	PendingKeyKind kind;
	char	   *path;			/* files: the path; commands: the tenant */
	char		keyring_id[KEYRING_ID_LEN + 1]; /* commands */
	uint32		kek_version;	/* commands */
	SubTransactionId subid;		/* (sub)transaction responsible for it */
} PendingKeyFile;

static List *pending_key_files = NIL;


/* ---------- key provider ---------- */

/* Refuse a key provider configuration that is missing or ambiguous. */
void
keys_provider_check_config(void)
{
	bool		have_dir = vecphi_key_directory != NULL && vecphi_key_directory[0] != '\0';
	bool		have_cmd = vecphi_kek_command != NULL && vecphi_kek_command[0] != '\0';

	if (have_dir && have_cmd)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("both vecphi.key_directory and vecphi.kek_command are set"),
				 errhint("Configure exactly one key provider in postgresql.conf.")));
	if (!have_dir && !have_cmd)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("no key provider is configured"),
				 errhint("Set vecphi.key_directory or vecphi.kek_command in postgresql.conf.")));
}

bool
keys_provider_is_embedded(void)
{
	keys_provider_check_config();
	return vecphi_key_directory != NULL && vecphi_key_directory[0] != '\0';
}

/*
 * Check that the key directory is absolute, a directory of ours that
 * nobody else can write, and not inside the data directory: keys there
 * would travel with every base backup and defeat crypto-shredding.
 */
void
keys_directory_check(void)
{
	struct stat st;
	char		dir_real[PATH_MAX];
	char		data_real[PATH_MAX];
	size_t		n;

	if (!is_absolute_path(vecphi_key_directory))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("vecphi.key_directory must be an absolute path")));
	if (stat(vecphi_key_directory, &st) != 0 || !S_ISDIR(st.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("key directory \"%s\" does not exist", vecphi_key_directory)));
	keyfile_check_stat(vecphi_key_directory, &st, VECPHI_KEYFILE_DIRECTORY,
					   "key directory");
	if (realpath(vecphi_key_directory, dir_real) != NULL &&
		realpath(DataDir, data_real) != NULL)
	{
		n = strlen(data_real);
		if (strncmp(dir_real, data_real, n) == 0 &&
			(dir_real[n] == '/' || dir_real[n] == '\0'))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("key directory \"%s\" is inside the data directory",
							vecphi_key_directory),
					 errdetail("Base backups and replicas copy the data directory; keys must live elsewhere.")));
	}
}

/* Path of a KEK file of the embedded provider. */
char *
keys_kek_file_path(const char *keyring_id, const char *tenant, uint32 kek_version)
{
	return psprintf("%s/%s.%s.%u.kek", vecphi_key_directory, keyring_id,
					tenant, kek_version);
}

/* Path of the file naming the owner of a keyring's key files. */
char *
keys_owner_path(const char *keyring_id)
{
	return psprintf("%s/%s.owner", vecphi_key_directory, keyring_id);
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode exactly 64 hex digits, ignoring surrounding white space. */
static bool
kek_parse_hex(const char *buf, size_t len, uint8 *kek)
{
	size_t		start = 0;
	int			i;

	while (start < len && isspace((unsigned char) buf[start]))
		start++;
	while (len > start && isspace((unsigned char) buf[len - 1]))
		len--;
	if (len - start != KEK_HEX_LEN)
		return false;
	for (i = 0; i < VECPHI_KEY_LEN; i++)
	{
		int			hi = hex_value(buf[start + 2 * i]);
		int			lo = hex_value(buf[start + 2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		kek[i] = (uint8) ((hi << 4) | lo);
	}
	return true;
}

/* Read a KEK file, refusing one that others could read or replace. */
static void
kek_read_file(const char *tenant, const char *path, uint8 *kek)
{
	int			fd;
	char		buf[KEK_HEX_LEN + 64 + 1];	/* up to 128 bytes, and a NUL */
	Size		len;
	bool		ok;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("key-encryption key of tenant \"%s\" is missing", tenant),
					 errdetail("File \"%s\" does not exist.", path)));
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open key file \"%s\" of tenant \"%s\": %m", path, tenant)));
	}
	/* On error the transaction's end closes fd. */
	keyfile_check_fd(fd, path, VECPHI_KEYFILE_SECRET, "key file");
	len = keyfile_read_small(fd, path, buf, sizeof(buf));
	CloseTransientFile(fd);
	ok = len > 0 && kek_parse_hex(buf, len, kek);
	crypto_wipe(buf, sizeof(buf));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("key file \"%s\" of tenant \"%s\" is malformed", path, tenant),
				 errdetail("A key file holds exactly 64 hexadecimal digits.")));
}

/*
 * Append a word for /bin/sh: as it is when it holds only characters no
 * shell treats specially, else single-quoted.  Tenant names are already
 * limited to such characters; this keeps %t safe should that ever change.
 */
static void
append_shell_word(StringInfo buf, const char *word)
{
	const char *p;

	if (strspn(word, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(word))
	{
		appendStringInfoString(buf, word);
		return;
	}
	appendStringInfoChar(buf, '\'');
	for (p = word; *p; p++)
	{
		if (*p == '\'')
			appendStringInfoString(buf, "'\\''");
		else
			appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '\'');
}

/*
 * A provider command with %k, %t and %v replaced.  The tenant goes in as
 * one shell word that never starts with "-", so a command cannot take it
 * for an option even where the template has no "--" before it; the keyring
 * id is 16 hex digits.
 */
static char *
provider_command(const char *template, const char *keyring_id,
				 const char *tenant, uint32 kek_version)
{
	StringInfoData cmd;
	const char *p;

	if (!vecphi_tenant_name_is_valid(tenant))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant name \"%s\"", tenant),
				 errdetail("A tenant name is never passed to a key provider command unless it is valid.")));
	initStringInfo(&cmd);
	for (p = template; *p; p++)
	{
		if (p[0] == '%' && p[1] == 't')
		{
			append_shell_word(&cmd, tenant);
			p++;
		}
		else if (p[0] == '%' && p[1] == 'v')
		{
			appendStringInfo(&cmd, "%u", kek_version);
			p++;
		}
		else if (p[0] == '%' && p[1] == 'k')
		{
			append_shell_word(&cmd, keyring_id);
			p++;
		}
		else if (p[0] == '%' && p[1] == '%')
		{
			appendStringInfoChar(&cmd, '%');
			p++;
		}
		else
			appendStringInfoChar(&cmd, *p);
	}
	return cmd.data;
}

/* Run vecphi.kek_command for one tenant and KEK version. */
static void
kek_run_command(const char *keyring_id, const char *tenant,
				uint32 kek_version, uint8 *kek)
{
	char	   *cmd = provider_command(vecphi_kek_command, keyring_id, tenant,
									   kek_version);
	FILE	   *fh;
	char		buf[256];
	size_t		nread;
	int			rc;
	bool		ok;

	fflush(NULL);
	fh = OpenPipeStream(cmd, "r");
	if (fh == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not run vecphi.kek_command for tenant \"%s\": %m", tenant)));
	nread = fread(buf, 1, sizeof(buf), fh);
	rc = ClosePipeStream(fh);
	ok = rc == 0 && kek_parse_hex(buf, nread, kek);
	crypto_wipe(buf, sizeof(buf));
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("key-encryption key of tenant \"%s\" is not available", tenant),
				 errdetail("vecphi.kek_command %s.", wait_result_to_str(rc))));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("vecphi.kek_command printed no valid key for tenant \"%s\"", tenant),
				 errdetail("The command must print exactly 64 hexadecimal digits.")));
}

/*
 * Run vecphi.kek_destroy_command for one tenant and KEK version; an error
 * unless it exits 0.  Its output is ignored.
 */
static void
kek_run_destroy_command_once(const char *keyring_id, const char *tenant,
							 uint32 kek_version)
{
	char	   *cmd = provider_command(vecphi_kek_destroy_command, keyring_id,
									   tenant, kek_version);
	int			rc;

	fflush(NULL);
	rc = system(cmd);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("vecphi.kek_destroy_command failed for tenant \"%s\", key-encryption key version %u",
						tenant, kek_version),
				 errdetail("The command %s.", wait_result_to_str(rc)),
				 errhint("Nothing was shredded; fix the command or the provider and call vecphi.shred_tenant() again.")));
}

/*
 * The provider calls as the rest of vecphi makes them: each counted in
 * the monitoring counters (common/stats.h), a failure too, with its time
 * (never the command's output or a key byte).
 */
void
keys_kek_read_file(const char *tenant, const char *path, uint8 *kek)
{
	stats_kek_call(STATS_KEY_DIRECTORY);
	PG_TRY();
	{
		kek_read_file(tenant, path, kek);
	}
	PG_CATCH();
	{
		stats_kek_failure(STATS_KEY_DIRECTORY);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

void
keys_kek_run_command(const char *keyring_id, const char *tenant,
					 uint32 kek_version, uint8 *kek)
{
	stats_kek_call(STATS_KEK_COMMAND);
	PG_TRY();
	{
		kek_run_command(keyring_id, tenant, kek_version, kek);
	}
	PG_CATCH();
	{
		stats_kek_failure(STATS_KEK_COMMAND);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

static void
kek_run_destroy_command(const char *keyring_id, const char *tenant,
						uint32 kek_version)
{
	stats_kek_call(STATS_KEK_DESTROY_COMMAND);
	PG_TRY();
	{
		kek_run_destroy_command_once(keyring_id, tenant, kek_version);
	}
	PG_CATCH();
	{
		stats_kek_failure(STATS_KEK_DESTROY_COMMAND);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Record this cluster and database as the owner of a keyring's key files,
 * atomically.  Not undone by an abort: ownership is an administrative
 * fact, not part of the keyring's data.
 */
void
keys_owner_write(const char *keyring_id)
{
	char	   *path = keys_owner_path(keyring_id);
	char	   *tmppath = psprintf("%s.tmp", path);
	char	   *line;
	int			fd;
	bool		ok;

	keys_directory_check();
	line = psprintf("%llu %u\n", (unsigned long long) GetSystemIdentifier(),
					MyDatabaseId);
	(void) unlink(tmppath);
	fd = OpenTransientFilePerm(tmppath, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY,
							   S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create keyring owner file \"%s\": %m", tmppath)));
	ok = write(fd, line, strlen(line)) == (ssize_t) strlen(line) &&
		pg_fsync(fd) == 0;
	CloseTransientFile(fd);
	if (!ok)
	{
		(void) unlink(tmppath);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write keyring owner file \"%s\": %m", tmppath)));
	}
	durable_rename(tmppath, path, ERROR);
}

/*
 * Check that this database may use a keyring's key files: "<id>.owner"
 * names this cluster and database.  With for_admin (create, rotate, shred)
 * a keyring without an owner file is claimed for this database, and one
 * owned anywhere else is refused.  Without it (reading a KEK), a keyring
 * owned by another database of this cluster is refused, since its owner's
 * rotations would destroy versions this database needs; one owned by
 * another cluster is read (its files were copied here: a restore or an
 * upgrade into this cluster), but not administered until adopted.
 */
void
keys_owner_check(const char *keyring_id, bool for_admin)
{
	char	   *path = keys_owner_path(keyring_id);
	uint64		sysid = GetSystemIdentifier();
	char		buf[128];
	unsigned long long owner_sysid = 0;
	unsigned int owner_db = 0;
	int			fd;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open keyring owner file \"%s\": %m", path)));
		if (for_admin)
			keys_owner_write(keyring_id);
		return;
	}
	keyfile_check_fd(fd, path, VECPHI_KEYFILE_SECRET, "keyring owner file");
	(void) keyfile_read_small(fd, path, buf, sizeof(buf));
	CloseTransientFile(fd);
	if (sscanf(buf, "%llu %u", &owner_sysid, &owner_db) != 2)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("keyring owner file \"%s\" is malformed", path),
				 errdetail("It holds the system identifier and the database OID of the owner.")));
	if (owner_sysid == (unsigned long long) sysid && owner_db == MyDatabaseId)
		return;
	if (!for_admin && owner_sysid != (unsigned long long) sysid)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("keyring %s belongs to another database", keyring_id),
			 errdetail("Its key files are owned by database %u of the cluster with system identifier %llu; this is database %u of cluster %llu. A restored dump carries the keyring id, not the key files.",
					   owner_db, owner_sysid, MyDatabaseId,
					   (unsigned long long) sysid),
			 errhint("Call vecphi.fork_keyring() to give this database its own copy of the keys, or, to move the keyring here, vecphi.adopt_keyring() as a superuser (docs/keys.md).")));
}

/* Fetch a tenant's KEK of the given version from the provider. */
void
keys_kek_fetch(const char *keyring_id, const char *tenant, uint32 kek_version,
			   uint8 *kek)
{
	if (keys_provider_is_embedded())
	{
		keys_directory_check();
		keys_owner_check(keyring_id, false);
		keys_kek_read_file(tenant, keys_kek_file_path(keyring_id, tenant, kek_version), kek);
	}
	else
		keys_kek_run_command(keyring_id, tenant, kek_version, kek);
}

/* Make a removal or rename in the key directory durable; best effort. */
static void
key_directory_fsync(void)
{
	int			fd = open(vecphi_key_directory, O_RDONLY | PG_BINARY, 0);

	if (fd >= 0)
	{
		if (pg_fsync(fd) != 0)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not fsync key directory \"%s\": %m",
							vecphi_key_directory)));
		close(fd);
	}
}

/*
 * Overwrite a key file with zeros, flush, and unlink it.  Used from
 * transaction callbacks, so failures are warnings, never errors.
 */
static void
kek_destroy_file(const char *path)
{
	int			fd;
	struct stat st;

	fd = open(path, O_WRONLY | PG_BINARY, 0);
	if (fd >= 0)
	{
		if (fstat(fd, &st) == 0 && st.st_size > 0)
		{
			char		zeros[256];
			off_t		left = st.st_size;

			memset(zeros, 0, sizeof(zeros));
			while (left > 0)
			{
				ssize_t		n = write(fd, zeros, Min(left, (off_t) sizeof(zeros)));

				if (n <= 0)
					break;
				left -= n;
			}
			(void) pg_fsync(fd);
		}
		close(fd);
	}
	if (unlink(path) != 0 && errno != ENOENT)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not remove key file \"%s\": %m", path)));
	else
		key_directory_fsync();
}

/* Remember a key action for the end of the (sub)transaction. */
void
keys_pending_add(PendingKeyKind kind, const char *path,
				 const char *keyring_id, uint32 kek_version)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	PendingKeyFile *pf = palloc0(sizeof(PendingKeyFile));

	pf->kind = kind;
	pf->path = pstrdup(path);
	if (keyring_id != NULL)
		strlcpy(pf->keyring_id, keyring_id, sizeof(pf->keyring_id));
	pf->kek_version = kek_version;
	pf->subid = GetCurrentSubTransactionId();
	pending_key_files = lappend(pending_key_files, pf);
	MemoryContextSwitchTo(old);
}

/* Remember a key file: superseded (destroy at commit) or created (at abort). */
void
keys_pending_file_add(const char *path, bool superseded)
{
	keys_pending_add(superseded ? PENDING_SUPERSEDED : PENDING_CREATED,
					 path, NULL, 0);
}

/* Does the current transaction have pending key files of this tenant? */
bool
keys_pending_files_of(const char *keyring_id, const char *tenant)
{
	ListCell   *lc;
	char	   *prefix = psprintf("%s/%s.%s.", vecphi_key_directory,
								  keyring_id, tenant);

	foreach(lc, pending_key_files)
	{
		PendingKeyFile *pf = lfirst(lc);

		if (pf->kind != PENDING_DESTROY_COMMAND &&
			strncmp(pf->path, prefix, strlen(prefix)) == 0)
			return true;
	}
	return false;
}

/*
 * Embedded provider: produce the KEK file of a new version.  With
 * adopt_existing, a file already in place is used as it is (a key the
 * administrator brought, or one left by a transaction that crashed);
 * otherwise it is replaced.  The new file is removed if the transaction
 * aborts.
 */
void
keys_kek_create_file(const char *keyring_id, const char *tenant,
					 uint32 kek_version, bool adopt_existing, uint8 *kek)
{
	char	   *path = keys_kek_file_path(keyring_id, tenant, kek_version);

	keys_directory_check();
	if (access(path, F_OK) == 0)
	{
		if (adopt_existing)
		{
			keys_kek_read_file(tenant, path, kek);
			return;
		}
		kek_destroy_file(path);
	}

	crypto_random_bytes(kek, VECPHI_KEY_LEN);
	keys_kek_write_file(path, kek);
}

/*
 * Write a KEK to a new file atomically (temporary file, fsync, rename); the
 * file is removed if the (sub)transaction aborts.
 */
void
keys_kek_write_file(const char *path, const uint8 *kek)
{
	char	   *tmppath = psprintf("%s.tmp", path);
	char		hex[KEK_HEX_LEN + 1];
	int			fd;
	int			i;
	bool		ok;

	for (i = 0; i < VECPHI_KEY_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", kek[i]);

	(void) unlink(tmppath);
	fd = OpenTransientFilePerm(tmppath, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY,
							   S_IRUSR | S_IWUSR);
	if (fd < 0)
	{
		crypto_wipe(hex, sizeof(hex));
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create key file \"%s\": %m", tmppath)));
	}
	ok = write(fd, hex, KEK_HEX_LEN) == KEK_HEX_LEN &&
		write(fd, "\n", 1) == 1 &&
		pg_fsync(fd) == 0;
	crypto_wipe(hex, sizeof(hex));
	CloseTransientFile(fd);
	if (!ok)
	{
		kek_destroy_file(tmppath);
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write key file \"%s\": %m", tmppath)));
	}
	keys_pending_file_add(path, false);
	durable_rename(tmppath, path, ERROR);
}

/* Destroy the key files the ending transaction made obsolete. */
static void
keys_xact_callback(XactEvent event, void *arg)
{
	bool		commit;
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pending_key_files != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that created or rotated vecphi keys")));
			return;
		case XACT_EVENT_PRE_COMMIT:

			/*
			 * A shred at a vecphi.kek_command provider: destroy the KEKs now,
			 * when nothing but a failure here can still abort the shred.  A
			 * failing command raises an error and the transaction aborts with
			 * the tenant intact (the versions already destroyed were older
			 * than the one its data keys are wrapped under).
			 */
			foreach(lc, pending_key_files)
			{
				PendingKeyFile *pf = lfirst(lc);

				if (pf->kind == PENDING_DESTROY_COMMAND)
				{
					kek_run_destroy_command(pf->keyring_id, pf->path,
											pf->kek_version);
					pf->kind = PENDING_SUPERSEDED;	/* done; nothing at commit */
					pf->path[0] = '\0';
				}
			}
			return;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			commit = true;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			commit = false;
			break;
		default:
			return;
	}
	foreach(lc, pending_key_files)
	{
		PendingKeyFile *pf = lfirst(lc);

		if (pf->path[0] != '\0' &&
			((pf->kind == PENDING_SUPERSEDED && commit) ||
			 (pf->kind == PENDING_CREATED && !commit)))
			kek_destroy_file(pf->path);
		pfree(pf->path);
	}
	list_free_deep(pending_key_files);
	pending_key_files = NIL;
}

/*
 * A subtransaction that aborts takes its key changes with it: files it
 * created are destroyed now, files it superseded stay, provider KEKs it
 * would have destroyed stay.  One that commits hands its actions to its
 * parent.
 */
static void
keys_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	List	   *keep = NIL;
	ListCell   *lc;
	MemoryContext old;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;

	/*
	 * The list outlives this subtransaction, whose memory an abort frees:
	 * build it where keys_pending_file_add() does.
	 */
	old = MemoryContextSwitchTo(TopMemoryContext);
	foreach(lc, pending_key_files)
	{
		PendingKeyFile *pf = lfirst(lc);

		if (pf->subid != mySubid)
			keep = lappend(keep, pf);
		else if (event == SUBXACT_EVENT_COMMIT_SUB)
		{
			pf->subid = parentSubid;
			keep = lappend(keep, pf);
		}
		else
		{
			if (pf->kind == PENDING_CREATED)
				kek_destroy_file(pf->path);
			pfree(pf->path);
			pfree(pf);
		}
	}
	list_free(pending_key_files);
	pending_key_files = keep;
	MemoryContextSwitchTo(old);
}


/* Register the transaction callbacks (keys_init()). */
void
keys_pending_init(void)
{
	RegisterXactCallback(keys_xact_callback, NULL);
	RegisterSubXactCallback(keys_subxact_callback, NULL);
}
