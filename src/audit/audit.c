/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  The audit trail: settings, records and their hash chain, the guards
 *	  that keep vecphi.audit_log append-only, and its SQL functions.
 *
 * Every record is chained: row_hash = HMAC-SHA-256(key, prev_hash ||
 * canonical columns), where prev_hash is the row_hash of the row before.
 * The key is a file only the server's OS user can read, kept with the
 * other keys and never in the data directory (audit.key in
 * vecphi.key_directory, or vecphi.audit_key_file; created by the first
 * audit writer of a primary), so someone who can only edit the table, or
 * holds a base backup, cannot forge matching hashes.  A chain cannot know
 * its own end, so after each batch the writer also writes a head file next
 * to the key (seq and hash of the newest record): verify_audit() finds
 * deleted newest rows with it, and writers continue after it.  A superuser
 * can read and write any file the server can, so against a superuser the
 * chain proves edits made by hand; vecphi.audit_head() exports the newest
 * hash for anchoring outside the server, which also exposes a chain
 * recomputed with the key.
 *
 * Only vecphi's own refusals become `denial` records (report_denial());
 * other errors of class 28000/42501 are `permission_error` records naming
 * where the server raised them.
 *
 * The canonical form of a row is each hashed column, in table order, as
 * its text output (timestamps as microseconds, so DateStyle and TimeZone
 * do not matter), length-prefixed, NULL marked apart from the empty
 * string.  The writer and vecphi.verify_audit() both derive it from what
 * the column will print, so they agree by construction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "common/string.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/fd.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "auditint.h"
#include "claims.h"
#include "crypto.h"
#include "hooks.h"
#include "keysettings.h"
#include "privsql.h"
#include "report.h"
#include "vecphi.h"

bool		vecphi_audit_enabled = true;
bool		vecphi_audit_synchronous = true;
int			vecphi_audit_timeout_ms = 10000;
int			vecphi_audit_queue_kb = 1024;
static int	vecphi_audit_retention_min = 7 * 365 * 24 * 60 + 2 * 24 * 60;
static char *vecphi_audit_key_file = NULL;

static emit_log_hook_type prev_emit_log_hook = NULL;
static int	utility_slot;		/* of audit_ProcessUtility (hooks.h) */

/* The retention purge may delete rows up to this seq (0: no purge running). */
static int64 purge_through_seq = 0;
static TimestampTz purge_cutoff = 0;

/* Set once vecphi is known to be installed in this database. */
static bool extension_seen = false;

/*
 * Guards against recursion when recording a permission error fails: the
 * transaction (local id) whose error the log hook is recording.  Tied to
 * the transaction rather than a flag to reset, so that even a path that
 * leaves the hook without reaching its end (an error while recording,
 * which aborts that transaction) cannot disable recording for the rest of
 * the session.
 */
static LocalTransactionId recording_denial_lxid = InvalidLocalTransactionId;

/*
 * The denial vecphi recorded itself just before raising it: its message,
 * statement and the source file of the ereport() that follows.
 */
static char *self_denial_message = NULL;
static char self_denial_file[MAXPGPATH];
static TimestampTz self_denial_statement = 0;

#define AUDIT_KEY_FILE_DEFAULT "audit.key"
#define CHECKPOINT_FORMAT "purged through seq=" INT64_FORMAT " hash=%s"


/* ---------- records ---------- */

static void
put_string(StringInfo buf, const char *s)
{
	int32		len = s ? (int32) strlen(s) : -1;

	appendBinaryStringInfo(buf, (const char *) &len, sizeof(int32));
	if (s)
		appendBinaryStringInfo(buf, s, len);
}

static char *
get_string(const char **p, const char *end)
{
	int32		len;
	char	   *s;

	if (*p + sizeof(int32) > end)
		elog(ERROR, "truncated audit record");
	memcpy(&len, *p, sizeof(int32));
	*p += sizeof(int32);
	if (len < 0)
		return NULL;
	if (*p + len > end)
		elog(ERROR, "truncated audit record");
	s = palloc(len + 1);
	memcpy(s, *p, len);
	s[len] = '\0';
	*p += len;
	return s;
}

/* The fixed part of a record on the queue. */
typedef struct AuditRecordFixed
{
	TimestampTz at;
	int64		statement_id;
	int64		rows;
	int32		backend_pid;
	bool		break_glass;
	bool		has_statement_id;
	bool		has_rows;
	bool		has_digest;
	uint8		digest[AUDIT_DIGEST_LEN];
} AuditRecordFixed;

void
audit_record_serialize(const AuditRecord *rec, StringInfo buf)
{
	AuditRecordFixed fixed;

	memset(&fixed, 0, sizeof(fixed));
	fixed.at = rec->at;
	fixed.statement_id = rec->statement_id;
	fixed.rows = rec->rows;
	fixed.backend_pid = rec->backend_pid;
	fixed.break_glass = rec->break_glass;
	fixed.has_statement_id = rec->has_statement_id;
	fixed.has_rows = rec->has_rows;
	fixed.has_digest = rec->has_digest;
	memcpy(fixed.digest, rec->digest, AUDIT_DIGEST_LEN);
	appendBinaryStringInfo(buf, (const char *) &fixed, sizeof(fixed));
	put_string(buf, rec->db_user);
	put_string(buf, rec->subject);
	put_string(buf, rec->tenant);
	put_string(buf, rec->app_role);
	put_string(buf, rec->purpose);
	put_string(buf, rec->break_glass_reason);
	put_string(buf, rec->action);
	put_string(buf, rec->relation);
	put_string(buf, rec->index_name);
	put_string(buf, rec->row_ids);
	put_string(buf, rec->outcome);
	put_string(buf, rec->detail);
}

void
audit_record_deserialize(const char *data, Size len, AuditRecord *rec)
{
	AuditRecordFixed fixed;
	const char *p = data + sizeof(fixed);
	const char *end = data + len;

	if (len < sizeof(fixed))
		elog(ERROR, "truncated audit record");
	memcpy(&fixed, data, sizeof(fixed));
	memset(rec, 0, sizeof(*rec));
	rec->at = fixed.at;
	rec->statement_id = fixed.statement_id;
	rec->rows = fixed.rows;
	rec->backend_pid = fixed.backend_pid;
	rec->break_glass = fixed.break_glass;
	rec->has_statement_id = fixed.has_statement_id;
	rec->has_rows = fixed.has_rows;
	rec->has_digest = fixed.has_digest;
	memcpy(rec->digest, fixed.digest, AUDIT_DIGEST_LEN);
	rec->db_user = get_string(&p, end);
	rec->subject = get_string(&p, end);
	rec->tenant = get_string(&p, end);
	rec->app_role = get_string(&p, end);
	rec->purpose = get_string(&p, end);
	rec->break_glass_reason = get_string(&p, end);
	rec->action = get_string(&p, end);
	rec->relation = get_string(&p, end);
	rec->index_name = get_string(&p, end);
	rec->row_ids = get_string(&p, end);
	rec->outcome = get_string(&p, end);
	rec->detail = get_string(&p, end);
	if (rec->db_user == NULL)
		rec->db_user = "?";
	if (rec->action == NULL || rec->outcome == NULL)
		elog(ERROR, "audit record without action or outcome");
}

/* Who, when, under which claims: the part of a record every event shares. */
void
audit_record_fill_context(AuditRecord *rec)
{
	static char last_user[NAMEDATALEN] = "?";
	const VecphiClaims *claims = claims_peek();

	rec->at = GetCurrentTimestamp();
	/* A parallel worker's records carry its leader's pid. */
	rec->backend_pid = MyProc->lockGroupLeader != NULL ?
		MyProc->lockGroupLeader->pid : MyProcPid;
	/* Catalog lookups only inside a transaction (VACUUM runs between). */
	if (IsTransactionState())
	{
		char	   *user = GetUserNameFromId(GetUserId(), true);

		if (user != NULL)
			strlcpy(last_user, user, NAMEDATALEN);
		rec->has_statement_id = true;
		rec->statement_id = (int64) GetCurrentStatementStartTimestamp();
	}
	rec->db_user = pstrdup(last_user);
	if (claims != NULL)
	{
		rec->subject = claims->subject;
		rec->tenant = claims->tenant;
		rec->app_role = claims->role;
		rec->purpose = claims->purpose;
		rec->break_glass = claims->break_glass != NULL;
		rec->break_glass_reason = claims->break_glass;
	}
}

/* Queue a record; see auditqueue_push_mode() for what mode does. */
uint64
audit_enqueue_record_mode(const AuditRecord *rec, AuditPushMode mode)
{
	StringInfoData buf;
	uint64		ticket;

	initStringInfo(&buf);
	audit_record_serialize(rec, &buf);
	ticket = auditqueue_push_mode(buf.data, buf.len, mode);
	pfree(buf.data);
	return ticket;
}

/* Queue a record; nothrow: never wait or raise (a lost record is counted). */
uint64
audit_enqueue_record(const AuditRecord *rec, bool nothrow)
{
	return audit_enqueue_record_mode(rec, nothrow ? AUDIT_PUSH_NOWAIT :
									 AUDIT_PUSH_RAISE);
}

/* Schema-qualified name of a relation, or NULL. */
char *
audit_relation_name(Oid relid)
{
	char	   *rel;
	char	   *nsp;

	if (!OidIsValid(relid))
		return NULL;
	if (!IsTransactionState())
		return psprintf("%u", relid);
	rel = get_rel_name(relid);
	if (rel == NULL)
		return psprintf("%u", relid);
	nsp = get_namespace_name(get_rel_namespace(relid));
	return quote_qualified_identifier(nsp, rel);
}

void
audit_emit(const AuditEvent *event, bool wait_durable)
{
	AuditRecord rec;
	uint64		ticket;

	if (!vecphi_audit_enabled || am_audit_writer)
		return;
	memset(&rec, 0, sizeof(rec));
	audit_record_fill_context(&rec);
	rec.action = (char *) event->action;
	rec.outcome = (char *) event->outcome;
	rec.relation = audit_relation_name(event->relid);
	rec.index_name = OidIsValid(event->indexid) && IsTransactionState() ?
		get_rel_name(event->indexid) : NULL;
	rec.has_rows = event->rows >= 0;
	rec.rows = event->rows;
	rec.row_ids = (char *) event->row_ids;
	rec.detail = (char *) event->detail;
	if (event->query_digest != NULL)
	{
		rec.has_digest = true;
		memcpy(rec.digest, event->query_digest, AUDIT_DIGEST_LEN);
	}
	ticket = audit_enqueue_record(&rec, false);
	if (wait_durable && vecphi_audit_synchronous && !IsParallelWorker())
		auditqueue_wait(ticket);
}


/* ---------- the chain's key and head file ---------- */

/*
 * The audit key file: vecphi.audit_key_file, else audit.key in
 * vecphi.key_directory.  Never in the data directory, so that base backups
 * do not carry it.  With the command key provider there is no key
 * directory, and vecphi.audit_key_file must be set.
 */
static char *
audit_key_file_path(void)
{
	char	   *path;
	char	   *dir;
	char	   *dir_real;
	char	   *data_real;
	bool		inside;

	if (vecphi_audit_key_file != NULL && vecphi_audit_key_file[0] != '\0')
	{
		if (!is_absolute_path(vecphi_audit_key_file))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("vecphi.audit_key_file must be an absolute path")));
		path = pstrdup(vecphi_audit_key_file);
	}
	else if (vecphi_key_directory != NULL && vecphi_key_directory[0] != '\0')
	{
		if (!is_absolute_path(vecphi_key_directory))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("vecphi.key_directory must be an absolute path")));
		path = psprintf("%s/%s", vecphi_key_directory, AUDIT_KEY_FILE_DEFAULT);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("vecphi.audit_key_file must be set when vecphi.key_directory is empty"),
				 errdetail("The audit chain's key is kept with the other keys, outside the data directory."),
				 errhint("Set vecphi.audit_key_file in postgresql.conf to a file outside the data directory, mode 0600, owned by the server's user.")));

	/*
	 * Not in the data directory, also not through a symbolic link (of the
	 * file, when it exists, or of its directory).
	 */
	dir = pstrdup(path);
	get_parent_directory(dir);
	dir_real = realpath(path, NULL);
	if (dir_real == NULL)
		dir_real = realpath(dir, NULL);
	data_real = realpath(DataDir, NULL);
	inside = dir_real != NULL && data_real != NULL &&
		path_is_prefix_of_path(data_real, dir_real);
	free(dir_real);
	free(data_real);
	if (inside)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("audit key file \"%s\" is inside the data directory", path),
				 errdetail("Every base backup and copy of the data directory would carry the key."),
				 errhint("Keep it with the key-encryption keys: in vecphi.key_directory (the default) or set vecphi.audit_key_file to a file outside the data directory.")));
	return path;
}

/* fsync a directory after a file in it was created or renamed. */
static bool
fsync_directory(const char *dir)
{
	int			fd = open(dir, O_RDONLY | PG_BINARY, 0);
	bool		ok;

	if (fd < 0)
		return false;
	ok = pg_fsync(fd) == 0;
	close(fd);
	return ok;
}

/*
 * Create the audit key file: 64 random hex digits, mode 0600, atomically:
 * written and fsynced under a temporary name, then linked to its name,
 * which fails if another process made it first (that one is used).
 */
static void
audit_create_key_file(const char *path)
{
	uint8		key[AUDIT_KEY_LEN];
	char		hex[AUDIT_KEY_LEN * 2 + 1];
	char	   *tmppath = psprintf("%s.%d.tmp", path, MyProcPid);
	char	   *dir = pstrdup(path);
	int			fd;
	bool		ok;
	int			save_errno;

	get_parent_directory(dir);
	fd = open(tmppath, O_WRONLY | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create audit key file \"%s\": %m", tmppath)));
	crypto_random_bytes(key, sizeof(key));
	hex[hex_encode((const char *) key, AUDIT_KEY_LEN, hex)] = '\0';
	ok = write(fd, hex, AUDIT_KEY_LEN * 2) == AUDIT_KEY_LEN * 2 &&
		pg_fsync(fd) == 0;
	save_errno = errno;
	close(fd);
	crypto_wipe(key, sizeof(key));
	crypto_wipe(hex, sizeof(hex));
	if (!ok)
	{
		unlink(tmppath);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write audit key file \"%s\": %m", tmppath)));
	}
	if (link(tmppath, path) != 0 && errno != EEXIST)
	{
		save_errno = errno;
		unlink(tmppath);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create audit key file \"%s\": %m", path)));
	}
	unlink(tmppath);
	if (!fsync_directory(dir))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not fsync directory \"%s\": %m", dir)));
	ereport(LOG,
			(errmsg("created audit key file \"%s\"", path),
			 errhint("Back it up with the key-encryption keys; vecphi.verify_audit() needs it.")));
}

/*
 * Open a key or head file for reading and check that it is private: a
 * regular file owned by the server's user, no access for group or others.
 * Returns -1 (errno ENOENT) when it does not exist.
 */
static int
audit_open_private_file(const char *path, const char *what)
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
static Size
audit_read_small_file(int fd, const char *path, char *buf, Size size)
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

/*
 * Load the chain key.  create_if_missing (the writer of a primary whose
 * chain has not begun) creates it; otherwise a missing key is an error,
 * never silently replaced: a new key would break the chain.
 */
void
audit_load_key(uint8 *key, bool create_if_missing)
{
	char	   *path = audit_key_file_path();
	char		buf[AUDIT_KEY_LEN * 2 + 64];
	int			fd;
	Size		len;

	fd = audit_open_private_file(path, "audit key file");
	if (fd < 0 && create_if_missing)
	{
		audit_create_key_file(path);
		fd = audit_open_private_file(path, "audit key file");
	}
	if (fd < 0)
	{
		if (RecoveryInProgress())
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FILE),
					 errmsg("audit key file \"%s\" is missing", path),
					 errdetail("A standby does not create an audit key of its own."),
					 errhint("Copy the primary's audit key file to this path (mode 0600, owned by the server's user); copy the primary's key directory, as for the key-encryption keys.")));
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("audit key file \"%s\" is missing", path),
				 errdetail("The audit chain has records made with that key; a new key would break it, so none is created."),
				 errhint("Restore the file from the backup of the keys (mode 0600, owned by the server's user).")));
	}
	len = audit_read_small_file(fd, path, buf, sizeof(buf));
	CloseTransientFile(fd);
	while (len > 0 && isspace((unsigned char) buf[len - 1]))
		len--;
	buf[len] = '\0';
	if (len != AUDIT_KEY_LEN * 2 ||
		strspn(buf, "0123456789abcdefABCDEF") != AUDIT_KEY_LEN * 2)
	{
		crypto_wipe(buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("audit key file \"%s\" is malformed", path),
				 errdetail("It holds exactly 64 hexadecimal digits.")));
	}
	hex_decode(buf, AUDIT_KEY_LEN * 2, (char *) key);
	crypto_wipe(buf, sizeof(buf));
}

/*
 * The head file of this database's chain, next to the audit key:
 * audit-head.<system identifier>.<database oid>, so that clusters sharing
 * a key directory (a standby and its primary share the identifier) and
 * databases do not mix.
 */
static char *
audit_head_file_path(void)
{
	char	   *dir = audit_key_file_path();

	get_parent_directory(dir);
	return psprintf("%s/audit-head." UINT64_FORMAT ".%u",
					dir, GetSystemIdentifier(), MyDatabaseId);
}

/* Read the head file; false when there is none.  Malformed: error. */
bool
audit_head_file_read(AuditHead *head)
{
	char	   *path = audit_head_file_path();
	char		buf[256];
	char		hex[AUDIT_DIGEST_LEN * 2 + 1];
	long long	seq;
	unsigned long long fxid;
	int			fd;

	fd = audit_open_private_file(path, "audit head file");
	if (fd < 0)
		return false;
	(void) audit_read_small_file(fd, path, buf, sizeof(buf));
	CloseTransientFile(fd);
	if (sscanf(buf, "%lld %64s %llu", &seq, hex, &fxid) != 3 || seq < 0 ||
		strlen(hex) != AUDIT_DIGEST_LEN * 2 ||
		strspn(hex, "0123456789abcdef") != AUDIT_DIGEST_LEN * 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("audit head file \"%s\" is malformed", path),
				 errdetail("It holds the seq and hash of the newest audit record and the transaction that wrote it.")));
	head->seq = seq;
	hex_decode(hex, AUDIT_DIGEST_LEN * 2, (char *) head->hash);
	head->fxid = fxid;
	return true;
}

/*
 * Replace the head file atomically (temporary file, fsync, rename) after a
 * batch committed.  A failure is logged, not
 * raised: the records are committed, and an old head file only lowers the
 * anchor (the table may be longer than its head file, never shorter).
 */
void
audit_head_file_write(const AuditHead *head)
{
	char	   *path;
	char	   *tmppath;
	char		hex[AUDIT_DIGEST_LEN * 2 + 1];
	char	   *line;
	int			fd;
	bool		ok;

	path = audit_head_file_path();
	tmppath = psprintf("%s.tmp", path);
	hex[hex_encode((const char *) head->hash, AUDIT_DIGEST_LEN, hex)] = '\0';
	line = psprintf(INT64_FORMAT " %s " UINT64_FORMAT "\n", head->seq, hex, head->fxid);

	fd = open(tmppath, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY, S_IRUSR | S_IWUSR);
	ok = fd >= 0;
	if (ok)
	{
		ok = write(fd, line, strlen(line)) == (ssize_t) strlen(line) &&
			pg_fsync(fd) == 0;
		close(fd);
	}

	/*
	 * No fsync of the directory: a rename lost in a crash leaves the previous
	 * head file, which names an older record (never a false alarm), and the
	 * writer's next batch writes it again.
	 */
	ok = ok && rename(tmppath, path) == 0;
	if (!ok)
	{
		int			save_errno = errno;

		unlink(tmppath);
		errno = save_errno;
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not write audit head file \"%s\": %m", path),
				 errdetail("vecphi.verify_audit() cannot tell whether the newest audit records were deleted until it is written.")));
	}
}

void
audit_chain_hash(const uint8 *key, const uint8 *prev_hash,
				 const char *const *values, uint8 *hash)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (const char *) prev_hash, AUDIT_DIGEST_LEN);
	for (i = 0; i < AUDIT_HASHED_COLUMNS; i++)
	{
		if (values[i] == NULL)
			appendStringInfoChar(&buf, 0);
		else
		{
			uint32		len = (uint32) strlen(values[i]);
			uint8		be[4] = {len >> 24, len >> 16, len >> 8, len};

			appendStringInfoChar(&buf, 1);
			appendBinaryStringInfo(&buf, (const char *) be, 4);
			appendBinaryStringInfo(&buf, values[i], len);
		}
	}
	crypto_hmac_sha256(key, AUDIT_KEY_LEN, (const uint8 *) buf.data, buf.len, hash);
	pfree(buf.data);
}

/* Keyed fingerprint of a query vector's digest, as hex. */
char *
audit_fingerprint_hex(const uint8 *key, const uint8 *digest)
{
	uint8		input[AUDIT_DIGEST_LEN + 16];
	uint8		mac[AUDIT_DIGEST_LEN];
	char	   *hex = palloc(AUDIT_DIGEST_LEN * 2 + 1);

	/* Domain-separated from the chain's use of the same key. */
	memcpy(input, "vecphi-query-fp\0", 16);
	memcpy(input + 16, digest, AUDIT_DIGEST_LEN);
	crypto_hmac_sha256(key, AUDIT_KEY_LEN, input, sizeof(input), mac);
	hex[hex_encode((const char *) mac, AUDIT_DIGEST_LEN, hex)] = '\0';
	return hex;
}


/* ---------- append-only guards ---------- */

static Oid
audit_log_relid(void)
{
	Oid			nsp = get_namespace_oid("vecphi", true);

	return OidIsValid(nsp) ? get_relname_relid("audit_log", nsp) : InvalidOid;
}

static void
refuse_audit_log_change(const char *what)
{
	char	   *message = psprintf("vecphi.audit_log is append-only: %s is not allowed", what);

	vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, message, NULL,
				errdetail("Only vecphi's audit writer adds rows, and only vecphi.purge_audit() removes rows past vecphi.audit_retention."));
}

PG_FUNCTION_INFO_V1(vecphi_audit_log_guard);
Datum
vecphi_audit_log_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		elog(ERROR, "vecphi_audit_log_guard: not called as a trigger");

	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		refuse_audit_log_change("TRUNCATE");
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		refuse_audit_log_change("UPDATE");
	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		if (!am_audit_writer)
			refuse_audit_log_change("INSERT");
		return PointerGetDatum(trigdata->tg_trigtuple);
	}
	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		HeapTuple	old = trigdata->tg_trigtuple;
		TupleDesc	desc = trigdata->tg_relation->rd_att;
		bool		isnull;
		int64		seq = DatumGetInt64(heap_getattr(old, 1, desc, &isnull));
		TimestampTz at = DatumGetTimestampTz(heap_getattr(old, 2, desc, &isnull));

		if (purge_through_seq == 0 || seq > purge_through_seq || at >= purge_cutoff)
			refuse_audit_log_change("DELETE");
		return PointerGetDatum(old);
	}
	return PointerGetDatum(NULL);
}

/* Does a RangeVar name vecphi.audit_log? */
static bool
rangevar_is_audit_log(RangeVar * rv, Oid audit_relid)
{
	return rv != NULL &&
		RangeVarGetRelid(rv, NoLock, true) == audit_relid;
}

/* Does a qualified name list (schema.table[.object]) name the audit log? */
static bool
names_are_audit_log(List *names, bool has_object, Oid audit_relid)
{
	List	   *relname = names;

	if (has_object)
		relname = list_truncate(list_copy(names), list_length(names) - 1);
	if (relname == NIL)
		return false;
	return rangevar_is_audit_log(makeRangeVarFromNameList(relname), audit_relid);
}

/*
 * Refuse DDL on vecphi.audit_log to everyone but superusers (its owner
 * included): disabling or dropping the guard triggers, rules, policies,
 * renaming or dropping the table.  A superuser can still do all of it;
 * the hash chain exposes what follows.
 */
static void
audit_check_utility(Node * stmt)
{
	Oid			audit_relid;
	bool		hit = false;
	ListCell   *lc;

	if (superuser())
		return;
	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
		case T_RenameStmt:
		case T_CreateTrigStmt:
		case T_RuleStmt:
		case T_CreatePolicyStmt:
		case T_AlterPolicyStmt:
		case T_DropStmt:
		case T_TruncateStmt:
		case T_AlterObjectSchemaStmt:
		case T_GrantStmt:
			break;
		default:
			return;
	}
	audit_relid = audit_log_relid();
	if (!OidIsValid(audit_relid))
		return;

	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			hit = rangevar_is_audit_log(((AlterTableStmt *) stmt)->relation, audit_relid);
			break;
		case T_RenameStmt:
			hit = rangevar_is_audit_log(((RenameStmt *) stmt)->relation, audit_relid);
			break;
		case T_CreateTrigStmt:
			hit = rangevar_is_audit_log(((CreateTrigStmt *) stmt)->relation, audit_relid);
			break;
		case T_RuleStmt:
			hit = rangevar_is_audit_log(((RuleStmt *) stmt)->relation, audit_relid);
			break;
		case T_CreatePolicyStmt:
			hit = rangevar_is_audit_log(((CreatePolicyStmt *) stmt)->table, audit_relid);
			break;
		case T_AlterPolicyStmt:
			hit = rangevar_is_audit_log(((AlterPolicyStmt *) stmt)->table, audit_relid);
			break;
		case T_AlterObjectSchemaStmt:
			hit = rangevar_is_audit_log(((AlterObjectSchemaStmt *) stmt)->relation, audit_relid);
			break;
		case T_TruncateStmt:
			foreach(lc, ((TruncateStmt *) stmt)->relations)
				hit |= rangevar_is_audit_log(lfirst_node(RangeVar, lc), audit_relid);
			break;
		case T_GrantStmt:
			{
				GrantStmt  *g = (GrantStmt *) stmt;

				if (g->is_grant && g->objtype == OBJECT_TABLE &&
					g->targtype == ACL_TARGET_OBJECT)
					foreach(lc, g->objects)
						hit |= rangevar_is_audit_log(lfirst_node(RangeVar, lc), audit_relid);
				break;
			}
		case T_DropStmt:
			{
				DropStmt   *d = (DropStmt *) stmt;

				if (d->removeType == OBJECT_TABLE)
					foreach(lc, d->objects)
						hit |= names_are_audit_log(lfirst(lc), false, audit_relid);
				else if (d->removeType == OBJECT_TRIGGER ||
						 d->removeType == OBJECT_RULE ||
						 d->removeType == OBJECT_POLICY)
					foreach(lc, d->objects)
						hit |= names_are_audit_log(lfirst(lc), true, audit_relid);
				break;
			}
		default:
			break;
	}
	if (hit)
	{
		vecphi_deny(ERRCODE_INSUFFICIENT_PRIVILEGE, "only a superuser may alter vecphi.audit_log or its triggers", NULL,
					errdetail("The audit log is append-only for every other role, its owner included."));
	}
}

static void
audit_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment * queryEnv,
					 DestReceiver *dest, QueryCompletion * qc)
{
	if (!am_audit_writer)
		audit_check_utility(pstmt->utilityStmt);
	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

/*
 * Record a denial vecphi is about to raise (a bad token, no claims, another
 * tenant's value, vecphi.max_scan_rows, a change to the audit log).  Only
 * these become `denial` records.  Recorded here, before the error, because
 * a PL/pgSQL EXCEPTION block that catches the error would keep it from
 * ever being reported to the log hook below - and probing tokens or
 * tenants inside such a block must leave a trace too.  The backend waits
 * for queue space as a scan does; a record that still finds none is
 * counted as lost (auditqueue.c).  file is the caller's __FILE__ (see the
 * report_denial() macro): the log hook skips the same error when it is
 * reported from that file.
 */
void
audit_denial_at(const char *message, const char *detail, const char *file)
{
	AuditRecord rec;
	const char *base = strrchr(file, '/');

	if (!vecphi_audit_enabled || am_audit_writer || IsParallelWorker() ||
		!OidIsValid(MyDatabaseId) || !IsTransactionState())
		return;
	memset(&rec, 0, sizeof(rec));
	audit_record_fill_context(&rec);
	rec.action = AUDIT_ACTION_DENIAL;
	rec.outcome = AUDIT_OUTCOME_DENIED;
	rec.detail = detail ? psprintf("%s: %s", message, detail) : (char *) message;
	(void) audit_enqueue_record_mode(&rec, AUDIT_PUSH_WAIT);

	if (self_denial_message != NULL)
		pfree(self_denial_message);
	self_denial_message = MemoryContextStrdup(TopMemoryContext, message);
	strlcpy(self_denial_file, base ? base + 1 : file, sizeof(self_denial_file));
	self_denial_statement = GetCurrentStatementStartTimestamp();
}

/*
 * Errors of class 28000 (invalid authorization) or 42501 (insufficient
 * privilege) that vecphi did not record through report_denial():
 * PostgreSQL's own refusals (permission denied, row-level security on a
 * write) and errors raised by SQL or PL code (RAISE ... USING ERRCODE).
 * They become `permission_error` records, never `denial`: anyone can raise
 * such an error with any text.  Where the error was raised (function and
 * source file) comes from the server's ErrorData, which no SQL can set,
 * and is appended to the message.  Queued without waiting and without ever
 * raising another error from inside error reporting; a record that does
 * not fit is counted as lost.
 */
static void
audit_emit_log_hook(ErrorData * edata)
{
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);

	if (edata->elevel < ERROR || !vecphi_audit_enabled || MyProc == NULL ||
		(recording_denial_lxid != InvalidLocalTransactionId &&
		 recording_denial_lxid == MyProc->lxid) ||
		am_audit_writer || IsParallelWorker() || !IsTransactionState() ||
		!OidIsValid(MyDatabaseId))
		return;
	if (edata->sqlerrcode != ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION &&
		edata->sqlerrcode != ERRCODE_INSUFFICIENT_PRIVILEGE)
		return;

	/* Already recorded by report_denial(), from the file that raised it? */
	if (self_denial_message != NULL &&
		self_denial_statement == GetCurrentStatementStartTimestamp() &&
		edata->message != NULL && strcmp(edata->message, self_denial_message) == 0 &&
		edata->filename != NULL && strcmp(edata->filename, self_denial_file) == 0)
	{
		pfree(self_denial_message);
		self_denial_message = NULL;
		return;
	}

	recording_denial_lxid = MyProc->lxid;
	if (!extension_seen)
		extension_seen = OidIsValid(get_extension_oid("vecphi", true));
	if (extension_seen)
	{
		AuditRecord rec;
		const char *msg = edata->message ? edata->message : "";

		memset(&rec, 0, sizeof(rec));
		audit_record_fill_context(&rec);
		rec.action = AUDIT_ACTION_PERMISSION_ERROR;
		rec.outcome = AUDIT_OUTCOME_ERROR;

		/*
		 * Bounded (whole characters), so that a huge message cannot make this
		 * allocation fail: an error raised here, inside error reporting,
		 * would free the error being reported.
		 */
		rec.detail = psprintf("%.*s [raised in %s, %s]",
							  pg_mbcliplen(msg, strlen(msg), 1024), msg,
							  edata->funcname ? edata->funcname : "?",
							  edata->filename ? edata->filename : "?");
		(void) audit_enqueue_record_mode(&rec, AUDIT_PUSH_NOWAIT);
	}
	recording_denial_lxid = InvalidLocalTransactionId;
}


/* ---------- SQL functions ---------- */

static bool
parse_hex_hash(const char *hex, uint8 *out)
{
	if (hex == NULL || strlen(hex) != AUDIT_DIGEST_LEN * 2 ||
		strspn(hex, "0123456789abcdefABCDEF") != AUDIT_DIGEST_LEN * 2)
		return false;
	hex_decode(hex, AUDIT_DIGEST_LEN * 2, (char *) out);
	return true;
}

/*
 * Is a chain that starts at a row whose predecessor would be through_seq,
 * with prev_hash prev, covered by a retention purge's checkpoint record
 * ("purged through seq=N hash=H")?  Looked up for the first row only, so
 * that verify_audit() keeps nothing per purge.  Leaves SPI_tuptable
 * changed: the caller keeps its own pointer to the rows it is reading.
 */
static bool
purge_checkpoint_covers(int64 through_seq, const uint8 *prev)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1];
	bool		covered = false;
	uint64		i;

	args[0] = CStringGetTextDatum(psprintf("purged through seq=" INT64_FORMAT " ",
										   through_seq));
	if (SPI_execute_with_args("SELECT detail FROM vecphi.audit_log "
							  "WHERE action OPERATOR(pg_catalog.=) 'audit_purge' "
							  "AND pg_catalog.starts_with(detail, $1)",
							  1, types, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read audit checkpoints");
	for (i = 0; i < SPI_processed && !covered; i++)
	{
		char	   *detail = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		long long	seq;
		char		hex[AUDIT_DIGEST_LEN * 2 + 1];
		uint8		hash[AUDIT_DIGEST_LEN];

		if (sscanf(detail, "purged through seq=%lld hash=%64s", &seq, hex) == 2 &&
			seq == through_seq && parse_hex_hash(hex, hash) &&
			memcmp(hash, prev, AUDIT_DIGEST_LEN) == 0)
			covered = true;
	}
	SPI_freetuptable(SPI_tuptable);
	return covered;
}

#define VERIFY_COLUMNS \
	"seq, at, db_user, backend_pid, statement_id, subject, tenant, app_role, " \
	"purpose, break_glass, break_glass_reason, action, relation, index_name, " \
	"rows_returned, row_ids, query_fingerprint, outcome, detail, prev_hash, row_hash"

/*
 * Was the head file's batch committed before the snapshot verify_audit()
 * reads the table with?  If not, the table as seen may rightly end before
 * the head file (a batch committed meanwhile), and its end is not checked.
 */
static bool
audit_head_visible(const AuditHead *head, Snapshot snapshot)
{
	uint64		next = U64FromFullTransactionId(ReadNextFullTransactionId());

	if (head->fxid == 0 || snapshot == NULL)
		return true;
	if (head->fxid >= next)
		return false;			/* not even replayed here yet (standby) */
	if (next - head->fxid > (uint64) (MaxTransactionId >> 1))
		return true;			/* long ago: beyond the 32-bit comparison */
	return !XidInMVCCSnapshot(XidFromFullTransactionId(FullTransactionIdFromU64(head->fxid)),
							  snapshot);
}

PG_FUNCTION_INFO_V1(vecphi_verify_audit);
Datum
vecphi_verify_audit(PG_FUNCTION_ARGS)
{
	bool		have_anchor = !PG_ARGISNULL(0);
	int64		anchor_seq = have_anchor ? PG_GETARG_INT64(0) : 0;
	uint8		anchor_hash[AUDIT_DIGEST_LEN];
	bool		anchor_seen = false;
	uint8		key[AUDIT_KEY_LEN];
	uint8		prev[AUDIT_DIGEST_LEN];
	int64		last_seq = 0;
	int64		checked = 0;
	int64		bad_seq = 0;
	char	   *problem = NULL;
	Portal		portal;
	MemoryContext batch_cxt;
	TupleDesc	result_desc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	MemoryContext caller_cxt = CurrentMemoryContext;
	PrivSql		ps;
	AuditHead	head;
	bool		have_head;
	bool		head_row_seen = false;
	bool		head_row_matches = false;
	int64		records_lost = 0;
	Snapshot	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : NULL;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (have_anchor &&
		(PG_ARGISNULL(1) || !parse_hex_hash(text_to_cstring(PG_GETARG_TEXT_PP(1)), anchor_hash)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("anchor_hash must be the 64 hexadecimal digits vecphi.audit_head() returned")));

	audit_load_key(key, false);
	have_head = audit_head_file_read(&head);
	privsql_begin(&ps, InvalidOid);

	/*
	 * Streamed: rows are fetched in batches of 1000 through a cursor, and
	 * everything made for a batch (its tuples, the columns' text) is freed
	 * before the next, so memory does not grow with the log.
	 */
	batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "vecphi verify_audit batch",
									  ALLOCSET_DEFAULT_SIZES);
	portal = SPI_cursor_open_with_args("vecphi_verify_audit",
									   "SELECT " VERIFY_COLUMNS " FROM vecphi.audit_log ORDER BY seq",
									   0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		uint64		i;
		uint64		nrows;
		SPITupleTable *batch;
		MemoryContext old;

		SPI_cursor_fetch(portal, true, 1000);
		batch = SPI_tuptable;
		nrows = SPI_processed;
		if (nrows == 0)
		{
			SPI_freetuptable(batch);
			break;
		}
		old = MemoryContextSwitchTo(batch_cxt);
		for (i = 0; i < nrows && problem == NULL; i++)
		{
			HeapTuple	tup = batch->vals[i];
			TupleDesc	desc = batch->tupdesc;
			const char *vals[AUDIT_HASHED_COLUMNS];
			bool		isnull;
			int64		seq = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
			bytea	   *stored_prev = DatumGetByteaPP(SPI_getbinval(tup, desc, 20, &isnull));
			bytea	   *stored_hash = DatumGetByteaPP(SPI_getbinval(tup, desc, 21, &isnull));
			uint8		hash[AUDIT_DIGEST_LEN];
			int			c;

			for (c = 0; c < AUDIT_HASHED_COLUMNS; c++)
				vals[c] = SPI_getvalue(tup, desc, c + 1);
			vals[AC_AT] = psprintf(INT64_FORMAT,
								   (int64) DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull)));

			if (VARSIZE_ANY_EXHDR(stored_prev) != AUDIT_DIGEST_LEN ||
				VARSIZE_ANY_EXHDR(stored_hash) != AUDIT_DIGEST_LEN)
				problem = "hash columns are malformed";
			else if (checked == 0)
			{
				bool		start_ok = false;

				if (seq == 1)
				{
					memset(prev, 0, AUDIT_DIGEST_LEN);
					start_ok = memcmp(VARDATA_ANY(stored_prev), prev, AUDIT_DIGEST_LEN) == 0;
				}
				else
					start_ok = purge_checkpoint_covers(seq - 1,
													   (const uint8 *) VARDATA_ANY(stored_prev));
				if (!start_ok)
					problem = "the first row is neither the start of the chain nor covered by a purge checkpoint";
			}
			else if (seq != last_seq + 1)
				problem = "rows are missing before this one (sequence gap)";
			else if (memcmp(VARDATA_ANY(stored_prev), prev, AUDIT_DIGEST_LEN) != 0)
				problem = "prev_hash does not match the row before";

			if (problem == NULL)
			{
				audit_chain_hash(key, (const uint8 *) VARDATA_ANY(stored_prev), vals, hash);
				if (!crypto_equal(hash, VARDATA_ANY(stored_hash), AUDIT_DIGEST_LEN))
					problem = "the row's contents do not match its hash (edited)";
			}
			if (problem == NULL && have_anchor && seq == anchor_seq)
			{
				anchor_seen = true;
				if (memcmp(anchor_hash, VARDATA_ANY(stored_hash), AUDIT_DIGEST_LEN) != 0)
					problem = "the row's hash differs from the exported anchor (chain rewritten)";
			}
			if (problem != NULL)
			{
				bad_seq = seq;
				break;
			}
			if (have_head && seq == head.seq)
			{
				head_row_seen = true;
				head_row_matches = memcmp(head.hash, VARDATA_ANY(stored_hash),
										  AUDIT_DIGEST_LEN) == 0;
			}
			if (vals[AC_ACTION] != NULL && vals[AC_ROWS_RETURNED] != NULL &&
				strcmp(vals[AC_ACTION], AUDIT_ACTION_DROPPED) == 0)
				records_lost += pg_strtoint64(vals[AC_ROWS_RETURNED]);
			memcpy(prev, VARDATA_ANY(stored_hash), AUDIT_DIGEST_LEN);
			last_seq = seq;
			checked++;
		}
		MemoryContextSwitchTo(old);
		SPI_freetuptable(batch);
		MemoryContextReset(batch_cxt);
		if (problem != NULL)
			break;
	}
	SPI_cursor_close(portal);
	MemoryContextDelete(batch_cxt);
	if (problem == NULL && have_anchor && !anchor_seen)
	{
		problem = "the anchored row is missing";
		bad_seq = anchor_seq;
	}

	/*
	 * The head file: the table must reach the newest record a writer
	 * committed (unless that commit is newer than this snapshot), with the
	 * same hash.  A standby checks against the primary's head file when it
	 * has a copy; it writes none itself, so a missing one is no finding.
	 */
	if (problem == NULL && !have_head && checked > 0 && !RecoveryInProgress())
	{
		problem = psprintf("the audit head file \"%s\" is missing: deleted newest records cannot be detected",
						   audit_head_file_path());
		bad_seq = last_seq;
	}
	else if (problem == NULL && have_head && audit_head_visible(&head, snapshot))
	{
		if (head.seq > last_seq)
		{
			problem = psprintf("newest records missing: seq " INT64_FORMAT ".." INT64_FORMAT,
							   last_seq + 1, head.seq);
			bad_seq = last_seq + 1;
		}
		else if (head_row_seen && !head_row_matches)
		{
			problem = "the row's hash differs from the audit head file (chain rewritten)";
			bad_seq = head.seq;
		}
	}
	if (problem != NULL)
		problem = MemoryContextStrdup(caller_cxt, problem);
	privsql_end(&ps);
	crypto_wipe(key, sizeof(key));

	values[0] = BoolGetDatum(problem == NULL);
	values[1] = Int64GetDatum(checked);
	values[4] = Int64GetDatum(records_lost);
	if (problem == NULL)
	{
		nulls[2] = true;
		nulls[3] = true;
	}
	else
	{
		values[2] = Int64GetDatum(bad_seq);
		values[3] = CStringGetTextDatum(problem);
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc),
													  values, nulls)));
}

PG_FUNCTION_INFO_V1(vecphi_audit_head);
Datum
vecphi_audit_head(PG_FUNCTION_ARGS)
{
	TupleDesc	result_desc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};
	MemoryContext caller_cxt = CurrentMemoryContext;
	PrivSql		ps;

	if (get_call_result_type(fcinfo, NULL, &result_desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	privsql_begin(&ps, InvalidOid);
	if (SPI_execute("SELECT seq, pg_catalog.encode(row_hash, 'hex'), at FROM vecphi.audit_log ORDER BY seq DESC LIMIT 1",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read vecphi.audit_log");
	if (SPI_processed == 1)
	{
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(caller_cxt);

		values[0] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		values[1] = CStringGetTextDatum(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2));
		values[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull);
		MemoryContextSwitchTo(old);
		nulls[0] = nulls[1] = nulls[2] = false;
	}
	privsql_end(&ps);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(result_desc),
													  values, nulls)));
}

/*
 * Remove the rows older than vecphi.audit_retention.  The rows go in seq
 * order up to the first row still within retention, and a checkpoint row
 * naming the last removed seq and its hash is made durable first, so that
 * verify_audit() can start the chain from there.
 */
PG_FUNCTION_INFO_V1(vecphi_purge_audit);
Datum
vecphi_purge_audit(PG_FUNCTION_ARGS)
{
	TimestampTz cutoff;
	int64		through = 0;
	char	   *hash_hex = NULL;
	uint64		removed = 0;
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		args[1];
	PrivSql		ps;

	if (!vecphi_audit_enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot purge the audit log while vecphi.audit is off"),
				 errdetail("The purge writes a checkpoint record that keeps the chain verifiable.")));
	cutoff = GetCurrentTimestamp() - (TimestampTz) vecphi_audit_retention_min * USECS_PER_MINUTE;
	args[0] = TimestampTzGetDatum(cutoff);

	privsql_begin(&ps, InvalidOid);
	if (SPI_execute_with_args("SELECT seq, pg_catalog.encode(row_hash, 'hex') FROM vecphi.audit_log "
							  "WHERE seq OPERATOR(pg_catalog.<) coalesce("
							  "(SELECT pg_catalog.min(seq) FROM vecphi.audit_log WHERE at OPERATOR(pg_catalog.>=) $1), "
							  "(SELECT pg_catalog.max(seq) OPERATOR(pg_catalog.+) 1 FROM vecphi.audit_log)) "
							  "ORDER BY seq DESC LIMIT 1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read vecphi.audit_log");
	if (SPI_processed == 1)
	{
		bool		isnull;

		through = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		hash_hex = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	}
	if (through > 0)
	{
		AuditEvent	ev;
		char	   *detail = psprintf(CHECKPOINT_FORMAT, through, hash_hex);

		memset(&ev, 0, sizeof(ev));
		ev.action = AUDIT_ACTION_PURGE;
		ev.outcome = AUDIT_OUTCOME_OK;
		ev.rows = -1;
		ev.detail = detail;
		audit_emit(&ev, false);
		auditqueue_last_ticket_wait();

		purge_through_seq = through;
		purge_cutoff = cutoff;
		PG_TRY();
		{
			Oid			types[1] = {INT8OID};
			Datum		seqarg[1] = {Int64GetDatum(through)};

			if (SPI_execute_with_args("DELETE FROM vecphi.audit_log WHERE seq OPERATOR(pg_catalog.<=) $1",
									  1, types, seqarg, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not purge vecphi.audit_log");
			removed = SPI_processed;
		}
		PG_FINALLY();
		{
			purge_through_seq = 0;
			purge_cutoff = 0;
		}
		PG_END_TRY();
	}
	privsql_end(&ps);
	PG_RETURN_INT64((int64) removed);
}

/* Undo append_escaped() of the standby file, in place. */
static char *
unescape_field(char *s)
{
	char	   *in = s;
	char	   *out = s;

	if (strcmp(s, "\\N") == 0)
		return NULL;
	while (*in)
	{
		if (*in == '\\' && in[1] != '\0')
		{
			in++;
			*out++ = *in == 't' ? '\t' : *in == 'n' ? '\n' : *in == 'r' ? '\r' : *in;
			in++;
		}
		else
			*out++ = *in++;
	}
	*out = '\0';
	return s;
}

/*
 * The records a hot standby's writer appended to its local file, each
 * with its chain re-checked (chain_ok).  On a primary the file normally
 * does not exist (it may be left from before a promotion).
 */
PG_FUNCTION_INFO_V1(vecphi_standby_audit_log);
Datum
vecphi_standby_audit_log(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *path = audit_standby_file_path();
	FILE	   *fh;
	StringInfoData line;
	uint8		key[AUDIT_KEY_LEN];
	uint8		prev[AUDIT_DIGEST_LEN];
	bool		key_loaded = false;

	InitMaterializedSRF(fcinfo, 0);
	fh = AllocateFile(path, "r");
	if (fh == NULL)
	{
		if (errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open standby audit file \"%s\": %m", path)));
		PG_RETURN_VOID();
	}
	memset(prev, 0, sizeof(prev));
	initStringInfo(&line);
	while (pg_get_line_buf(fh, &line))
	{
		char	   *fields[AUDIT_HASHED_COLUMNS + 2];
		char	   *record;
		const char *vals[AUDIT_HASHED_COLUMNS];
		char	   *p;
		int			n = 0;
		Datum		values[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};
		uint8		hash[AUDIT_DIGEST_LEN];
		uint8		stored_hash[AUDIT_DIGEST_LEN];
		uint8		stored_prev[AUDIT_DIGEST_LEN];
		bool		ok;
		int			i;

		if (line.len > 0 && line.data[line.len - 1] == '\n')
			line.data[--line.len] = '\0';
		record = pstrdup(line.data);
		/* seq, hash, prev hash, then the columns after seq. */
		for (p = line.data; n < AUDIT_HASHED_COLUMNS + 2;)
		{
			fields[n++] = p;
			p = strchr(p, '\t');
			if (p == NULL)
				break;
			*p++ = '\0';
		}
		if (n != AUDIT_HASHED_COLUMNS + 2 ||
			!parse_hex_hash(fields[1], stored_hash) ||
			!parse_hex_hash(fields[2], stored_prev))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("standby audit file \"%s\" has a malformed line", path)));
		vals[AC_SEQ] = fields[0];
		for (i = AC_AT; i < AUDIT_HASHED_COLUMNS; i++)
			vals[i] = unescape_field(fields[i + 2]);
		if (!key_loaded)
		{
			audit_load_key(key, false);
			key_loaded = true;
		}
		audit_chain_hash(key, stored_prev, vals, hash);
		ok = crypto_equal(hash, stored_hash, AUDIT_DIGEST_LEN) &&
			memcmp(prev, stored_prev, AUDIT_DIGEST_LEN) == 0;
		memcpy(prev, stored_hash, AUDIT_DIGEST_LEN);

		values[0] = Int64GetDatum(pg_strtoint64(vals[AC_SEQ]));
		values[1] = TimestampTzGetDatum((TimestampTz) pg_strtoint64(vals[AC_AT]));
		values[2] = CStringGetTextDatum(vals[AC_DB_USER] ? vals[AC_DB_USER] : "");
		values[3] = CStringGetTextDatum(vals[AC_ACTION] ? vals[AC_ACTION] : "");
		values[4] = CStringGetTextDatum(record);
		values[5] = CStringGetTextDatum(fields[1]);
		values[6] = BoolGetDatum(ok);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	FreeFile(fh);
	if (key_loaded)
		crypto_wipe(key, sizeof(key));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(vecphi_audit_flush);
Datum
vecphi_audit_flush(PG_FUNCTION_ARGS)
{
	auditqueue_last_ticket_wait();
	PG_RETURN_INT64((int64) auditqueue_pending());
}


/* The receivers of common/report.h's reports. */
static const ReportSink audit_report_sink = {
	.denial = audit_denial_at,
	.decrypt = audit_count_decrypt,
	.distance = audit_note_distance,
};

/* ---------- start-up ---------- */

void
audit_init(void)
{
	DefineCustomBoolVariable("vecphi.audit",
							 "Record similarity scans, decryptions, denials, key events and erasures in vecphi.audit_log.",
							 "Turning it off weakens protection; only superusers can.",
							 &vecphi_audit_enabled,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomBoolVariable("vecphi.audit_synchronous",
							 "Withhold result rows until their audit records are committed.",
							 "Off: records are queued and committed shortly after, and a crash can lose the last ones.",
							 &vecphi_audit_synchronous,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.audit_timeout",
							"How long a statement waits for its audit record before failing.",
							NULL,
							&vecphi_audit_timeout_ms,
							10000, 100, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.audit_retention",
							"Age after which vecphi.purge_audit() removes audit rows.",
							"Default 7 years.",
							&vecphi_audit_retention_min,
							7 * 365 * 24 * 60 + 2 * 24 * 60, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MIN,
							NULL, NULL, NULL);
	DefineCustomStringVariable("vecphi.audit_key_file",
							   "File with the key of the audit hash chain (64 hex digits).",
							   "Empty: audit.key in vecphi.key_directory, created by the first audit writer of a primary.",
							   &vecphi_audit_key_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("vecphi.audit_queue_size",
							"Shared memory for queued audit records, per database.",
							NULL,
							&vecphi_audit_queue_kb,
							1024, 64, 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_KB,
							NULL, NULL, NULL);

	auditqueue_install_hooks();
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = audit_emit_log_hook;
	utility_slot = utility_register(audit_ProcessUtility);
	auditexec_init();

	/* What the layers below report (common/report.h) comes here. */
	report_set_sink(&audit_report_sink);
}
