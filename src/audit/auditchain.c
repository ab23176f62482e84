/*-------------------------------------------------------------------------
 *
 * auditchain.c
 *	  Audit records and their hash chain: filling, serialising and hashing
 *	  a record, the chain's key and the head file.
 *
 * The design of the chain (key, head file, canonical form) is described at
 * the top of audit.c.
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
#include "citus.h"
#include "claims.h"
#include "crypto.h"
#include "keyfile.h"
#include "hooks.h"
#include "keysettings.h"
#include "privsql.h"
#include "report.h"
#include "stats.h"
#include "vecphi.h"

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

/*
 * Count a record in the monitoring counters (common/stats.c): scans,
 * decryptions, denials and permission errors, by the record's claims.
 * Counted where the record is queued, so the counters and the log agree;
 * a record that could not be queued is counted too (the log has it as an
 * audit_dropped count), one that raised instead is not.
 */
static void
audit_record_count(const AuditRecord *rec)
{
	StatsActivity kind;

	if (strcmp(rec->action, AUDIT_ACTION_INDEX_SCAN) == 0)
		kind = STATS_INDEX_SCAN;
	else if (strcmp(rec->action, AUDIT_ACTION_EXACT_SCAN) == 0)
		kind = STATS_EXACT_SCAN;
	else if (strcmp(rec->action, AUDIT_ACTION_READ) == 0)
		kind = STATS_READ;
	else if (strcmp(rec->action, AUDIT_ACTION_DECRYPT) == 0)
		kind = STATS_DECRYPT;
	else if (strcmp(rec->action, AUDIT_ACTION_DENIAL) == 0)
		kind = STATS_DENIAL;
	else if (strcmp(rec->action, AUDIT_ACTION_PERMISSION_ERROR) == 0)
		kind = STATS_PERMISSION_ERROR;
	else
		return;
	stats_count_activity(rec->tenant, rec->app_role, kind,
						 rec->has_rows ? rec->rows : 0, rec->break_glass,
						 rec->at);
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
	audit_record_count(rec);
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

/* Empty shard scans go to auditcitus.c when it is loaded (auditint.h). */
AuditFoldHook audit_fold_hook = NULL;

/*
 * On a Citus node: a record of a shard names the shard's distributed table
 * (the shard goes to the detail), and a record made in a distributed
 * transaction carries its id and the global PID of the backend that
 * started it, so that each worker's records join the coordinator's
 * (docs/citus.md).  Appended to the detail, which the chain covers.
 */
static void
audit_cluster_context(const AuditEvent *event, AuditRecord *rec,
					  Oid *table, uint64 *shardid, CitusTxn * txn, bool *in_txn)
{
	StringInfoData buf;

	*shardid = 0;
	*table = vecphi_citus_shard_table(event->relid, shardid);
	*in_txn = vecphi_citus_current_txn(txn);
	if (!OidIsValid(*table) && !*in_txn)
		return;
	initStringInfo(&buf);
	if (rec->detail != NULL)
		appendStringInfo(&buf, "%s; ", rec->detail);
	appendStringInfoString(&buf, "citus:");
	if (OidIsValid(*table))
	{
		rec->relation = audit_relation_name(*table);
		appendStringInfo(&buf, " shard " UINT64_FORMAT, *shardid);
	}
	if (*in_txn)
		appendStringInfo(&buf, "%s transaction %d:" UINT64_FORMAT ", gpid " UINT64_FORMAT,
						 OidIsValid(*table) ? "," : "",
						 txn->initiator_node, txn->number, txn->gpid);
	rec->detail = buf.data;
}

void
audit_emit(const AuditEvent *event, bool wait_durable)
{
	AuditRecord rec;
	uint64		ticket;
	Oid			table;
	uint64		shardid;
	CitusTxn	txn;
	bool		in_txn;

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
	audit_cluster_context(event, &rec, &table, &shardid, &txn, &in_txn);
	if (event->query_digest != NULL)
	{
		rec.has_digest = true;
		memcpy(rec.digest, event->query_digest, AUDIT_DIGEST_LEN);
	}
	/* An empty scan of a shard in a distributed transaction: folded. */
	if (OidIsValid(table) && in_txn && event->rows == 0 &&
		event->detail == NULL && !IsParallelWorker() &&
		audit_fold_hook != NULL && audit_fold_hook(&rec, shardid, &txn))
		return;
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

	fd = keyfile_open_private(path, "audit key file");
	if (fd < 0 && create_if_missing)
	{
		audit_create_key_file(path);
		fd = keyfile_open_private(path, "audit key file");
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
	len = keyfile_read_small(fd, path, buf, sizeof(buf));
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
char *
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

	fd = keyfile_open_private(path, "audit head file");
	if (fd < 0)
		return false;
	(void) keyfile_read_small(fd, path, buf, sizeof(buf));
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
