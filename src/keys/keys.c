/*-------------------------------------------------------------------------
 *
 * keys.c
 *	  The key hierarchy: tenants, their key-encryption keys (KEKs) at the
 *	  key provider, and their data keys (DEKs), stored only wrapped in
 *	  vecphi.keyring and cached unwrapped in backend memory.
 *
 * Keyrings.  Each database's keyring has a random id (16 hex digits) in
 * vecphi.keyring_identity, made by the first vecphi.create_tenant() and
 * carried by pg_dump.  Key identity is (keyring id, tenant, KEK version),
 * so the same tenant name in two databases never shares a KEK.
 *
 * Key providers.  A KEK never enters the database.  The embedded provider
 * keeps one file per tenant and KEK version in vecphi.key_directory, named
 * "<keyring id>.<tenant>.<kek_version>.kek", holding 64 hex digits, mode
 * 0600, owned by the server's user, in a directory outside the data
 * directory (so a base backup never carries keys).  "<keyring id>.owner"
 * names the cluster (system identifier) and database that own the files:
 * only that database may create, rotate or shred with them, and another
 * database of the same cluster may not even read them (a dump restored
 * there carries the id, but the files are not its own: if it could read
 * them, the owner's next rotation would destroy a version it needs).
 * vecphi.fork_keyring() gives such a database its own copy under a new id,
 * and vecphi.adopt_keyring() moves ownership (docs/keys.md).  The
 * alternative provider runs vecphi.kek_command with %k replaced by the
 * keyring id, %t by the tenant and %v by the KEK version; it prints the
 * KEK as 64 hex digits.
 *
 * Key files and transactions.  Files cannot roll back, so create and
 * rotate write the new KEK file before they commit, remove it again if the
 * transaction aborts, and destroy the superseded KEK only after the commit
 * that stops using it.  A crash between commit and destruction leaves the
 * old file behind; the next rotation of that tenant destroys it, at its
 * commit, once every data key is wrapped under the new version.  Every
 * pending action belongs to the (sub)transaction that asked for it and
 * goes with it if it aborts.
 *
 * Ids and versions.  Tenant ids and data key versions come from the
 * sequences vecphi.tenant_ids and vecphi.dek_versions, never from
 * max() + 1: rows written under a key whose transaction aborted leave index
 * entries behind (they do not roll back), and a number handed out again
 * would let them meet another key of the same number.  ehnsw asks
 * keys_dek_exists() before it decrypts an element and skips one whose key
 * never came to exist.  KEK versions stay n+1 per tenant: nothing stored
 * refers to a KEK version whose rotation aborted (docs/keys.md).
 *
 * Caches.  The tenants table is read whole into a small cache; unwrapped
 * DEKs are cached as scheduled AES keys for the life of the backend (a DEK
 * never changes once written).  Key administration sends a relcache
 * invalidation on the keyring tables, which marks both caches stale;
 * they are emptied at the next lookup, never from inside the callback, so
 * a DataKey a caller holds stays valid until its next call here.
 *
 * Crypto-shredding.  vecphi.shred_tenant() drops a tenant's wrapped DEKs,
 * leaves a tombstone in vecphi.shredded_tenants (the tenants row stays, so
 * the id is never reused and errors can name the tenant) and destroys its
 * KEK at the provider: the embedded provider overwrites and unlinks every
 * KEK file of the tenant when the transaction commits; a vecphi.kek_command
 * deployment runs vecphi.kek_destroy_command in the pre-commit phase (so
 * its failure still aborts the shred, and a rollback never reaches it).
 * The relcache
 * invalidation reaches every backend, and every DEK lookup, cached or not,
 * first takes in pending invalidations (a cheap check of a shared flag),
 * so no backend keeps decrypting with a cached DEK once the shred has
 * committed and its invalidations are sent.
 *
 * Reads on the hot path go straight to the heap with an MVCC snapshot:
 * no SQL, no search_path, no permission check on the caller.  Writes are
 * SQL run through privsql.c (search_path pinned, every name qualified)
 * inside SECURITY DEFINER functions that pin search_path as well.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "audit.h"
#include "crypto.h"
#include "keyfile.h"
#include "keys.h"
#include "privsql.h"
#include "vecphi.h"

/* Columns of vecphi.tenants and vecphi.keyring, as in the install script. */
#define Anum_tenants_tenant_id		1
#define Anum_tenants_tenant			2
#define Anum_tenants_kek_version	3
#define Anum_tenants_current_dek	4
#define Anum_keyring_tenant_id		1
#define Anum_keyring_dek_version	2
#define Anum_keyring_kek_version	3
#define Anum_keyring_wrapped_dek	4
#define Anum_shredded_tenant_id		1
#define Anum_keyring_identity_id	2

#define KEYRING_ID_LEN 16		/* hex digits */

#define KEK_HEX_LEN (VECPHI_KEY_LEN * 2)

typedef struct TenantEntry
{
	uint32		tenant_id;		/* hash key */
	char		name[VECPHI_TENANT_NAME_MAX + 1];
	uint32		kek_version;
	uint32		current_dek;
	bool		shredded;		/* in vecphi.shredded_tenants */
} TenantEntry;

typedef struct TenantNameEntry
{
	char		name[VECPHI_TENANT_NAME_MAX + 1];	/* hash key */
	uint32		tenant_id;
} TenantNameEntry;

typedef struct DataKeyId
{
	uint32		tenant_id;
	uint32		dek_version;
} DataKeyId;

typedef struct DataKeyEntry
{
	DataKeyId	id;				/* hash key */
	DataKey		key;
} DataKeyEntry;

/* Whether a data key exists, as keys_dek_exists() last found. */
typedef struct DataKeyPresence
{
	DataKeyId	id;				/* hash key */
	bool		exists;
} DataKeyPresence;

static MemoryContext KeyCacheContext = NULL;
static HTAB *tenants_by_id = NULL;
static HTAB *tenants_by_name = NULL;
static HTAB *data_keys = NULL;
static HTAB *dek_presence = NULL;	/* DataKeyPresence by DataKeyId */
static bool key_caches_stale = false;
static Oid	tenants_relid_seen = InvalidOid;
static Oid	keyring_relid_seen = InvalidOid;
static Oid	shredded_relid_seen = InvalidOid;
static Oid	identity_relid_seen = InvalidOid;
static char cached_keyring_id[KEYRING_ID_LEN + 1];	/* "" when none */

/*
 * Key actions the current transaction left for its end.  A file it created
 * is destroyed if the (sub)transaction that created it aborts; a file it
 * superseded is destroyed when the top-level transaction commits; a KEK at
 * a vecphi.kek_command provider is destroyed by vecphi.kek_destroy_command
 * just before the commit.  An action is forgotten if the (sub)transaction
 * that asked for it aborts.
 */
typedef enum PendingKeyKind
{
	PENDING_CREATED,			/* file: destroy at abort */
	PENDING_SUPERSEDED,			/* file: destroy after commit */
	PENDING_DESTROY_COMMAND		/* provider KEK: destroy before commit */
} PendingKeyKind;

typedef struct PendingKeyFile
{
	PendingKeyKind kind;
	char	   *path;			/* files: the path; commands: the tenant */
	char		keyring_id[KEYRING_ID_LEN + 1]; /* commands */
	uint32		kek_version;	/* commands */
	SubTransactionId subid;		/* (sub)transaction responsible for it */
} PendingKeyFile;

static List *pending_key_files = NIL;

static void kek_write_file(const char *path, const uint8 *kek);
static void keyring_owner_write(const char *keyring_id);


/* ---------- caches ---------- */

/* Drop every cached key, wiping the scheduled AES keys. */
static void
key_caches_flush(void)
{
	if (data_keys != NULL)
	{
		HASH_SEQ_STATUS status;
		DataKeyEntry *entry;

		hash_seq_init(&status, data_keys);
		while ((entry = hash_seq_search(&status)) != NULL)
			crypto_aead_destroy(entry->key.aead);
	}
	data_keys = NULL;
	dek_presence = NULL;
	tenants_by_id = NULL;
	tenants_by_name = NULL;
	cached_keyring_id[0] = '\0';
	if (KeyCacheContext != NULL)
		MemoryContextReset(KeyCacheContext);
	key_caches_stale = false;
}

/* Relcache callback: a change to the keyring tables makes the caches stale. */
static void
keys_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == tenants_relid_seen ||
		relid == keyring_relid_seen || relid == shredded_relid_seen ||
		relid == identity_relid_seen)
		key_caches_stale = true;
}

/* OID of vecphi.<relname>, or an error when the extension is missing. */
static Oid
keyring_table_oid(const char *relname)
{
	Oid			nsp = get_namespace_oid("vecphi", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"vecphi\" is not installed in this database")));
	return relid;
}

/*
 * Snapshot for reading the keyring: the latest committed state plus this
 * transaction's own changes, so a tenant created earlier in the same
 * transaction is visible.  Parallel workers cannot take new snapshots.
 */
static Snapshot
keyring_snapshot(Oid relid)
{
	if (IsInParallelMode())
		return RegisterSnapshot(GetCatalogSnapshot(relid));
	return RegisterSnapshot(GetLatestSnapshot());
}

/* Create the cache hashes if they do not exist. */
static void
key_caches_prepare(void)
{
	HASHCTL		ctl;

	if (key_caches_stale)
		key_caches_flush();
	if (KeyCacheContext == NULL)
		KeyCacheContext = AllocSetContextCreate(TopMemoryContext,
												"vecphi key cache",
												ALLOCSET_SMALL_SIZES);
	if (data_keys == NULL)
	{
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(DataKeyId);
		ctl.entrysize = sizeof(DataKeyEntry);
		ctl.hcxt = KeyCacheContext;
		data_keys = hash_create("vecphi data keys", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	if (dek_presence == NULL)
	{
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(DataKeyId);
		ctl.entrysize = sizeof(DataKeyPresence);
		ctl.hcxt = KeyCacheContext;
		dek_presence = hash_create("vecphi data key presence", 64, &ctl,
								   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
}

/* Read vecphi.tenants whole into the tenant caches. */
static void
tenant_cache_load(void)
{
	HASHCTL		ctl;
	Oid			relid = keyring_table_oid("tenants");
	Relation	rel;
	Snapshot	snapshot;
	SysScanDesc scan;
	HeapTuple	tuple;

	key_caches_prepare();
	tenants_relid_seen = relid;

	/*
	 * A miss reloads the tenants while the cache may still hold them: free
	 * the old tables (each has its own memory context) rather than leave them
	 * in KeyCacheContext until the next flush.
	 */
	if (tenants_by_id != NULL)
		hash_destroy(tenants_by_id);
	if (tenants_by_name != NULL)
		hash_destroy(tenants_by_name);
	tenants_by_id = NULL;
	tenants_by_name = NULL;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(TenantEntry);
	ctl.hcxt = KeyCacheContext;
	tenants_by_id = hash_create("vecphi tenants by id", 32, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = VECPHI_TENANT_NAME_MAX + 1;
	ctl.entrysize = sizeof(TenantNameEntry);
	ctl.hcxt = KeyCacheContext;
	tenants_by_name = hash_create("vecphi tenants by name", 32, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	rel = table_open(relid, AccessShareLock);
	snapshot = keyring_snapshot(relid);
	scan = systable_beginscan(rel, InvalidOid, false, snapshot, 0, NULL);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		TupleDesc	desc = RelationGetDescr(rel);
		bool		isnull;
		uint32		id;
		char	   *name;
		TenantEntry *entry;
		TenantNameEntry *name_entry;

		id = DatumGetInt32(heap_getattr(tuple, Anum_tenants_tenant_id, desc, &isnull));
		name = TextDatumGetCString(heap_getattr(tuple, Anum_tenants_tenant, desc, &isnull));
		if (strlen(name) > VECPHI_TENANT_NAME_MAX)
			continue;			/* the table's CHECK forbids it */
		entry = hash_search(tenants_by_id, &id, HASH_ENTER, NULL);
		strlcpy(entry->name, name, sizeof(entry->name));
		entry->kek_version = DatumGetInt32(heap_getattr(tuple, Anum_tenants_kek_version, desc, &isnull));
		entry->current_dek = DatumGetInt32(heap_getattr(tuple, Anum_tenants_current_dek, desc, &isnull));
		entry->shredded = false;
		name_entry = hash_search(tenants_by_name, entry->name, HASH_ENTER, NULL);
		name_entry->tenant_id = id;
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	/* Tombstones of shredded tenants. */
	relid = keyring_table_oid("shredded_tenants");
	shredded_relid_seen = relid;
	rel = table_open(relid, AccessShareLock);
	snapshot = keyring_snapshot(relid);
	scan = systable_beginscan(rel, InvalidOid, false, snapshot, 0, NULL);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;
		uint32		id;
		TenantEntry *entry;

		id = DatumGetInt32(heap_getattr(tuple, Anum_shredded_tenant_id,
										RelationGetDescr(rel), &isnull));
		entry = hash_search(tenants_by_id, &id, HASH_FIND, NULL);
		if (entry != NULL)
			entry->shredded = true;
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	/* The keyring id (none before the first tenant). */
	relid = keyring_table_oid("keyring_identity");
	identity_relid_seen = relid;
	cached_keyring_id[0] = '\0';
	rel = table_open(relid, AccessShareLock);
	snapshot = keyring_snapshot(relid);
	scan = systable_beginscan(rel, InvalidOid, false, snapshot, 0, NULL);
	if (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_keyring_identity_id,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			strlcpy(cached_keyring_id, TextDatumGetCString(d),
					sizeof(cached_keyring_id));
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	/* Opening the table may have processed invalidations; we are fresh. */
	key_caches_stale = false;
}

/* Cached tenant by id, reading the table once more on a miss. */
static TenantEntry *
tenant_lookup(uint32 tenant_id)
{
	TenantEntry *entry = NULL;

	if (key_caches_stale)
		key_caches_flush();
	if (tenants_by_id != NULL)
		entry = hash_search(tenants_by_id, &tenant_id, HASH_FIND, NULL);
	if (entry == NULL)
	{
		tenant_cache_load();
		entry = hash_search(tenants_by_id, &tenant_id, HASH_FIND, NULL);
	}
	return entry;
}

/* Tenant id for a name; 0 when missing_ok and there is no such tenant. */
uint32
keys_tenant_id(const char *tenant, bool missing_ok)
{
	TenantNameEntry *entry = NULL;
	char		key[VECPHI_TENANT_NAME_MAX + 1];

	if (strlen(tenant) <= VECPHI_TENANT_NAME_MAX)
	{
		memset(key, 0, sizeof(key));
		strlcpy(key, tenant, sizeof(key));
		if (key_caches_stale)
			key_caches_flush();
		if (tenants_by_name != NULL)
			entry = hash_search(tenants_by_name, key, HASH_FIND, NULL);
		if (entry == NULL)
		{
			tenant_cache_load();
			entry = hash_search(tenants_by_name, key, HASH_FIND, NULL);
		}
	}
	if (entry != NULL)
		return entry->tenant_id;
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("tenant \"%s\" has no keys", tenant),
				 errhint("A key administrator creates them with vecphi.create_tenant().")));
	return 0;
}

/* Has the tenant been crypto-shredded?  False for an unknown tenant. */
bool
keys_tenant_is_shredded(uint32 tenant_id)
{
	TenantEntry *entry = tenant_lookup(tenant_id);

	return entry != NULL && entry->shredded;
}

/* Raise the error for a value of a shredded tenant. */
static void
tenant_shredded_error(const char *tenant)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_FILE),
			 errmsg("keys of tenant \"%s\" have been crypto-shredded", tenant),
			 errdetail("vecphi.shred_tenant() destroyed its key-encryption key and dropped its data keys; its ciphertext can no longer be decrypted or written.")));
}

/* Name of a tenant, or NULL when it is not in the keyring. */
char *
keys_tenant_name(uint32 tenant_id)
{
	TenantEntry *entry = tenant_lookup(tenant_id);

	return entry != NULL ? pstrdup(entry->name) : NULL;
}


/* ---------- key provider ---------- */

/* Refuse a key provider configuration that is missing or ambiguous. */
static void
provider_check_config(void)
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

static bool
provider_is_embedded(void)
{
	provider_check_config();
	return vecphi_key_directory != NULL && vecphi_key_directory[0] != '\0';
}

/*
 * Check that the key directory is absolute, a directory of ours that
 * nobody else can write, and not inside the data directory: keys there
 * would travel with every base backup and defeat crypto-shredding.
 */
static void
key_directory_check(void)
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
static char *
kek_file_path(const char *keyring_id, const char *tenant, uint32 kek_version)
{
	return psprintf("%s/%s.%s.%u.kek", vecphi_key_directory, keyring_id,
					tenant, kek_version);
}

/* Path of the file naming the owner of a keyring's key files. */
static char *
keyring_owner_path(const char *keyring_id)
{
	return psprintf("%s/%s.owner", vecphi_key_directory, keyring_id);
}

/* Is s a keyring id: exactly KEYRING_ID_LEN lower-case hex digits? */
static bool
keyring_id_is_valid(const char *s)
{
	return strlen(s) == KEYRING_ID_LEN &&
		strspn(s, "0123456789abcdef") == KEYRING_ID_LEN;
}

/* The keyring id the tenant cache holds; an error if there is none. */
static const char *
cached_keyring_id_or_error(void)
{
	if (!keyring_id_is_valid(cached_keyring_id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database's vecphi keyring has no id"),
				 errdetail("vecphi.keyring_identity is empty or malformed; key files are named by the keyring id."),
				 errhint("Restore vecphi.keyring_identity with the rest of the keyring, or see docs/keys.md.")));
	return cached_keyring_id;
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
	char		buf[KEK_HEX_LEN + 64];
	ssize_t		nread;
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
	nread = read(fd, buf, sizeof(buf));
	CloseTransientFile(fd);
	ok = nread > 0 && kek_parse_hex(buf, (size_t) nread, kek);
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
kek_run_destroy_command(const char *keyring_id, const char *tenant,
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
 * Record this cluster and database as the owner of a keyring's key files,
 * atomically.  Not undone by an abort: ownership is an administrative
 * fact, not part of the keyring's data.
 */
static void
keyring_owner_write(const char *keyring_id)
{
	char	   *path = keyring_owner_path(keyring_id);
	char	   *tmppath = psprintf("%s.tmp", path);
	char	   *line;
	int			fd;
	bool		ok;

	key_directory_check();
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
static void
keyring_owner_check(const char *keyring_id, bool for_admin)
{
	char	   *path = keyring_owner_path(keyring_id);
	uint64		sysid = GetSystemIdentifier();
	char		buf[128];
	unsigned long long owner_sysid = 0;
	unsigned int owner_db = 0;
	int			fd;
	ssize_t		nread;

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open keyring owner file \"%s\": %m", path)));
		if (for_admin)
			keyring_owner_write(keyring_id);
		return;
	}
	keyfile_check_fd(fd, path, VECPHI_KEYFILE_SECRET, "keyring owner file");
	nread = read(fd, buf, sizeof(buf) - 1);
	CloseTransientFile(fd);
	buf[Max(nread, 0)] = '\0';
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
static void
kek_fetch(const char *keyring_id, const char *tenant, uint32 kek_version,
		  uint8 *kek)
{
	if (provider_is_embedded())
	{
		key_directory_check();
		keyring_owner_check(keyring_id, false);
		kek_read_file(tenant, kek_file_path(keyring_id, tenant, kek_version), kek);
	}
	else
		kek_run_command(keyring_id, tenant, kek_version, kek);
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
static void
pending_key_action_add(PendingKeyKind kind, const char *path,
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
static void
pending_key_file_add(const char *path, bool superseded)
{
	pending_key_action_add(superseded ? PENDING_SUPERSEDED : PENDING_CREATED,
						   path, NULL, 0);
}

/* Does the current transaction have pending key files of this tenant? */
static bool
pending_key_files_of(const char *keyring_id, const char *tenant)
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
static void
kek_create_file(const char *keyring_id, const char *tenant,
				uint32 kek_version, bool adopt_existing, uint8 *kek)
{
	char	   *path = kek_file_path(keyring_id, tenant, kek_version);

	key_directory_check();
	if (access(path, F_OK) == 0)
	{
		if (adopt_existing)
		{
			kek_read_file(tenant, path, kek);
			return;
		}
		kek_destroy_file(path);
	}

	crypto_random_bytes(kek, VECPHI_KEY_LEN);
	kek_write_file(path, kek);
}

/*
 * Write a KEK to a new file atomically (temporary file, fsync, rename); the
 * file is removed if the (sub)transaction aborts.
 */
static void
kek_write_file(const char *path, const uint8 *kek)
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
	pending_key_file_add(path, false);
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
	 * build it where pending_key_file_add() does.
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


/* ---------- data keys ---------- */

/*
 * The wrapped DEK of a tenant and version from vecphi.keyring, and the KEK
 * version it is wrapped under; NULL when the keyring has no such key.
 */
static bytea *
keyring_read_wrapped(uint32 tenant_id, uint32 dek_version, uint32 *kek_version)
{
	Oid			relid;
	Relation	rel;
	Snapshot	snapshot;
	SysScanDesc scan;
	ScanKeyData skey[2];
	HeapTuple	tuple;
	bytea	   *wrapped = NULL;

	relid = keyring_table_oid("keyring");
	keyring_relid_seen = relid;
	rel = table_open(relid, AccessShareLock);
	snapshot = keyring_snapshot(relid);
	ScanKeyInit(&skey[0], Anum_keyring_tenant_id, BTEqualStrategyNumber,
				F_INT4EQ, Int32GetDatum((int32) tenant_id));
	ScanKeyInit(&skey[1], Anum_keyring_dek_version, BTEqualStrategyNumber,
				F_INT4EQ, Int32GetDatum((int32) dek_version));
	scan = systable_beginscan(rel, InvalidOid, false, snapshot, 2, skey);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;

		*kek_version = DatumGetInt32(heap_getattr(tuple, Anum_keyring_kek_version,
												  RelationGetDescr(rel), &isnull));
		wrapped = DatumGetByteaPCopy(heap_getattr(tuple, Anum_keyring_wrapped_dek,
												  RelationGetDescr(rel), &isnull));
	}
	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return wrapped;
}

/* The DEK of a tenant and version, unwrapped and cached on first use. */
DataKey *
keys_get_dek(uint32 tenant_id, uint32 dek_version)
{
	DataKeyId	id;
	DataKeyEntry *entry;
	TenantEntry *tenant;
	char		tenant_name[VECPHI_TENANT_NAME_MAX + 1];
	char		keyring_id[KEYRING_ID_LEN + 1];
	uint32		kek_version = 0;
	bytea	   *wrapped;
	uint8		kek[VECPHI_KEY_LEN];
	uint8		dek[VECPHI_KEY_LEN];
	bool		unwrapped;
	VecphiAead *aead;

	/*
	 * Take in invalidations first, so a shred committed by another backend
	 * empties our cache before we use a cached key (see the file header).
	 * Without pending messages this only reads a flag.
	 */
	AcceptInvalidationMessages();
	key_caches_prepare();
	memset(&id, 0, sizeof(id));
	id.tenant_id = tenant_id;
	id.dek_version = dek_version;
	entry = hash_search(data_keys, &id, HASH_FIND, NULL);
	if (entry != NULL)
		return &entry->key;

	tenant = tenant_lookup(tenant_id);
	if (tenant == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("tenant #%u has no keys", tenant_id),
				 errdetail("The value was encrypted for a tenant that is not in vecphi.keyring, or whose keys were destroyed.")));
	strlcpy(tenant_name, tenant->name, sizeof(tenant_name));
	if (tenant->shredded)
		tenant_shredded_error(tenant_name);
	strlcpy(keyring_id, cached_keyring_id_or_error(), sizeof(keyring_id));

	wrapped = keyring_read_wrapped(tenant_id, dek_version, &kek_version);
	if (wrapped == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("data key %u of tenant \"%s\" is missing", dek_version, tenant_name),
				 errdetail("vecphi.keyring has no such key; it was never created here or has been destroyed.")));

	kek_fetch(keyring_id, tenant_name, kek_version, kek);
	unwrapped = crypto_unwrap_key(kek, (uint8 *) VARDATA_ANY(wrapped),
								  VARSIZE_ANY_EXHDR(wrapped), dek);
	crypto_wipe(kek, sizeof(kek));
	if (!unwrapped)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("data key %u of tenant \"%s\" cannot be unwrapped", dek_version, tenant_name),
				 errdetail("The key-encryption key from the provider is not the one that wrapped it, or the wrapped key was altered.")));
	aead = crypto_aead_create(dek);
	crypto_wipe(dek, sizeof(dek));

	/* Opening the keyring may have flushed the cache: re-prepare it. */
	key_caches_prepare();
	entry = hash_search(data_keys, &id, HASH_ENTER, NULL);
	entry->key.tenant_id = tenant_id;
	entry->key.dek_version = dek_version;
	entry->key.aead = aead;
	return &entry->key;
}

/*
 * Does the DEK of a tenant and version exist (in vecphi.keyring, of a
 * tenant not shredded)?  Raises nothing for an unknown tenant or version
 * and unwraps nothing.  For ehnsw: index entries do not roll back, so an
 * index can hold elements of rows written under a key made by a
 * rotate_dek() or create_tenant() whose transaction aborted or died in a
 * crash; such a key never comes to exist (versions and tenant ids are never
 * handed out twice), and the index skips its elements.  The answer is
 * cached until the keyring changes.
 */
bool
keys_dek_exists(uint32 tenant_id, uint32 dek_version)
{
	DataKeyId	id;
	DataKeyPresence *presence;
	TenantEntry *tenant;
	bool		exists = false;

	AcceptInvalidationMessages();
	key_caches_prepare();
	memset(&id, 0, sizeof(id));
	id.tenant_id = tenant_id;
	id.dek_version = dek_version;
	if (hash_search(data_keys, &id, HASH_FIND, NULL) != NULL)
		return true;
	presence = hash_search(dek_presence, &id, HASH_FIND, NULL);
	if (presence != NULL)
		return presence->exists;

	tenant = tenant_lookup(tenant_id);
	if (tenant != NULL && !tenant->shredded)
	{
		uint32		kek_version;
		bytea	   *wrapped = keyring_read_wrapped(tenant_id, dek_version,
												   &kek_version);

		exists = wrapped != NULL;
		if (wrapped != NULL)
			pfree(wrapped);
	}

	/* Reading the tables may have flushed the cache: re-prepare it. */
	key_caches_prepare();
	presence = hash_search(dek_presence, &id, HASH_ENTER, NULL);
	presence->exists = exists;
	return exists;
}

/* The DEK new values of a tenant are encrypted under. */
DataKey *
keys_current_dek(uint32 tenant_id)
{
	TenantEntry *tenant = tenant_lookup(tenant_id);

	if (tenant == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("tenant #%u has no keys", tenant_id)));
	return keys_get_dek(tenant_id, tenant->current_dek);
}


/* ---------- key administration (SQL) ---------- */

/* Check a tenant name from SQL and return it as a C string. */
static char *
tenant_name_arg(text *arg)
{
	char	   *name = text_to_cstring(arg);

	if (name[0] == '-')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant name \"%s\"", name),
				 errdetail("A tenant name cannot start with a hyphen: a key provider's command could take it for an option.")));
	if (!vecphi_tenant_name_is_valid(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid tenant name \"%s\"", name),
				 errdetail("Tenant names are 1 to %d letters, digits, underscores or hyphens.",
						   VECPHI_TENANT_NAME_MAX)));
	return name;
}

/*
 * The privileged section of the key function running now (privsql.c): the
 * functions are SECURITY DEFINER, and their statements pin search_path and
 * qualify every name besides, so that they do not depend on the function
 * definition for it.
 */
static PrivSql keys_sql;

/* Run one SPI statement with arguments and check its result code. */
static void
spi_run(const char *sql, int nargs, Oid *types, Datum *values,
		bool read_only, int expected)
{
	int			rc;

	rc = privsql_execute(&keys_sql, sql, nargs, types, values, read_only, 0);
	if (rc != expected)
		elog(ERROR, "vecphi: SPI statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
}

/* Integer column of the first SPI result row. */
static int32
spi_int(int row, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc,
								  col, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

/*
 * The next value of one of the extension's id sequences (vecphi.tenant_ids,
 * vecphi.dek_versions), and past floor, the highest id in use.  Sequences
 * do not roll back: an id handed to a transaction that aborted, or died in
 * a crash, is never handed out again, even though the rows that used it
 * are gone.  The floor covers a sequence left behind the table (rows
 * brought in without it); it cannot know ids that were handed out and
 * rolled back, which is why only the extension's owner may touch the
 * sequences.
 */
static int32
sequence_next_past(const char *seqname, int32 floor)
{
	Oid			types[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	int32		next;

	values[0] = CStringGetTextDatum(seqname);
	spi_run("SELECT pg_catalog.nextval($1::pg_catalog.regclass)::pg_catalog.int4",
			1, types, values, false, SPI_OK_SELECT);
	next = spi_int(0, 1);
	if (next <= floor)
	{
		values[1] = Int32GetDatum(floor);
		spi_run("SELECT pg_catalog.setval($1::pg_catalog.regclass, $2)",
				2, types, values, false, SPI_OK_SELECT);
		spi_run("SELECT pg_catalog.nextval($1::pg_catalog.regclass)::pg_catalog.int4",
				1, types, values, false, SPI_OK_SELECT);
		next = spi_int(0, 1);
	}
	return next;
}

/* A tenant's id, KEK version and whether it was shredded, row locked. */
#define TENANT_LOCK_SQL \
	"SELECT t.tenant_id, t.kek_version, s.tenant_id IS NOT NULL " \
	"FROM vecphi.tenants t LEFT JOIN vecphi.shredded_tenants s " \
	"ON s.tenant_id OPERATOR(pg_catalog.=) t.tenant_id " \
	"WHERE t.tenant OPERATOR(pg_catalog.=) $1 FOR UPDATE OF t"

/* Lock a tenant's row and return its id and KEK version. */
static uint32
tenant_lock_for_admin(const char *name, uint32 *kek_version)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	spi_run(TENANT_LOCK_SQL, 1, types, values, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("tenant \"%s\" does not exist", name)));
	if (spi_int(0, 3))
		tenant_shredded_error(name);
	*kek_version = spi_int(0, 2);
	return spi_int(0, 1);
}

/* A new random keyring id. */
static char *
keyring_id_generate(void)
{
	uint8		raw[KEYRING_ID_LEN / 2];
	char	   *id = palloc(KEYRING_ID_LEN + 1);
	int			i;

	crypto_random_bytes(raw, sizeof(raw));
	for (i = 0; i < (int) sizeof(raw); i++)
		snprintf(id + 2 * i, 3, "%02x", raw[i]);
	return id;
}

/* A copy of s in the memory of SPI's caller, which SPI_finish() keeps. */
static char *
spi_outlive(const char *s)
{
	char	   *copy = SPI_palloc(strlen(s) + 1);

	strcpy(copy, s);
	return copy;
}

/*
 * The keyring id, read (and row locked) in the running privileged section.
 * With create, a database that has none yet gets one (its first key
 * administration); otherwise having none is an error.
 */
static char *
admin_keyring_id(bool create)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	   *id;

	spi_run("SELECT keyring_id FROM vecphi.keyring_identity FOR UPDATE",
			0, NULL, NULL, false, SPI_OK_SELECT);
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull);

		id = isnull ? "" : TextDatumGetCString(d);
		if (!keyring_id_is_valid(id))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("vecphi.keyring_identity holds a malformed keyring id")));
		/* Callers use it after SPI_finish(), which frees SPI's memory. */
		return spi_outlive(id);
	}
	if (!create)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database's vecphi keyring has no id"),
				 errdetail("vecphi.keyring_identity is empty; key files are named by the keyring id."),
				 errhint("Restore vecphi.keyring_identity with the rest of the keyring, or see docs/keys.md.")));
	id = keyring_id_generate();
	values[0] = CStringGetTextDatum(id);
	spi_run("INSERT INTO vecphi.keyring_identity (keyring_id) VALUES ($1)",
			1, types, values, false, SPI_OK_INSERT);
	return spi_outlive(id);
}

/* bytea datum holding a wrapped key. */
static Datum
wrapped_key_datum(const uint8 *wrapped)
{
	bytea	   *b = palloc(VARHDRSZ + VECPHI_WRAPPED_KEY_LEN);

	SET_VARSIZE(b, VARHDRSZ + VECPHI_WRAPPED_KEY_LEN);
	memcpy(VARDATA(b), wrapped, VECPHI_WRAPPED_KEY_LEN);
	return PointerGetDatum(b);
}

/* Generate a DEK, wrap it under kek, and store it in the keyring. */
static void
dek_create(uint32 tenant_id, uint32 dek_version, uint32 kek_version,
		   const uint8 *kek)
{
	uint8		dek[VECPHI_KEY_LEN];
	uint8		wrapped[VECPHI_WRAPPED_KEY_LEN];
	Oid			types[4] = {INT4OID, INT4OID, INT4OID, BYTEAOID};
	Datum		values[4];

	crypto_random_bytes(dek, sizeof(dek));
	crypto_wrap_key(kek, dek, wrapped);
	crypto_wipe(dek, sizeof(dek));
	values[0] = Int32GetDatum(tenant_id);
	values[1] = Int32GetDatum(dek_version);
	values[2] = Int32GetDatum(kek_version);
	values[3] = wrapped_key_datum(wrapped);
	spi_run("INSERT INTO vecphi.keyring (tenant_id, dek_version, kek_version, wrapped_dek) "
			"VALUES ($1, $2, $3, $4)",
			4, types, values, false, SPI_OK_INSERT);
}

/* Tell every backend that the keyring changed. */
static void
keys_invalidate_all(void)
{
	CacheInvalidateRelcacheByRelid(keyring_table_oid("tenants"));
	CacheInvalidateRelcacheByRelid(keyring_table_oid("keyring"));
	CacheInvalidateRelcacheByRelid(keyring_table_oid("keyring_identity"));
}

/*
 * Record a key event in the audit log.  Queued, not awaited: the event's
 * own transaction may still roll back, and the record says it was tried.
 */
static void
key_event_audit(const char *action, const char *tenant, uint32 version)
{
	AuditEvent	ev;

	memset(&ev, 0, sizeof(ev));
	ev.action = action;
	ev.outcome = AUDIT_OUTCOME_OK;
	ev.rows = -1;
	ev.detail = psprintf("tenant %s, version %u", tenant, version);
	audit_emit(&ev, false);
}

PG_FUNCTION_INFO_V1(vecphi_create_tenant);
Datum
vecphi_create_tenant(PG_FUNCTION_ARGS)
{
	char	   *name = tenant_name_arg(PG_GETARG_TEXT_PP(0));
	uint8		kek[VECPHI_KEY_LEN];
	Oid			types[2] = {INT4OID, TEXTOID};
	Datum		values[2];
	uint32		tenant_id;
	char	   *keyring_id;

	provider_check_config();
	privsql_begin(&keys_sql, InvalidOid);
	spi_run("LOCK TABLE vecphi.tenants IN SHARE ROW EXCLUSIVE MODE",
			0, NULL, NULL, false, SPI_OK_UTILITY);
	keyring_id = admin_keyring_id(true);
	values[0] = CStringGetTextDatum(name);
	spi_run("SELECT 1 FROM vecphi.tenants WHERE tenant OPERATOR(pg_catalog.=) $1",
			1, &types[1], values, false, SPI_OK_SELECT);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("tenant \"%s\" already exists", name)));
	spi_run("SELECT coalesce(pg_catalog.max(tenant_id), 0) FROM vecphi.tenants",
			0, NULL, NULL, false, SPI_OK_SELECT);
	tenant_id = sequence_next_past("vecphi.tenant_ids", spi_int(0, 1));

	PG_TRY();
	{
		if (provider_is_embedded())
		{
			key_directory_check();
			keyring_owner_check(keyring_id, true);
			kek_create_file(keyring_id, name, 1, true, kek);
		}
		else
			kek_run_command(keyring_id, name, 1, kek);

		values[0] = Int32GetDatum(tenant_id);
		values[1] = CStringGetTextDatum(name);
		spi_run("INSERT INTO vecphi.tenants (tenant_id, tenant, kek_version, current_dek) "
				"VALUES ($1, $2, 1, 1)",
				2, types, values, false, SPI_OK_INSERT);
		dek_create(tenant_id, 1, 1, kek);
	}
	PG_FINALLY();
	{
		crypto_wipe(kek, sizeof(kek));
	}
	PG_END_TRY();

	privsql_end(&keys_sql);
	keys_invalidate_all();
	key_event_audit(AUDIT_ACTION_KEY_CREATE, name, 1);
	PG_RETURN_INT32(tenant_id);
}

PG_FUNCTION_INFO_V1(vecphi_rotate_kek);
Datum
vecphi_rotate_kek(PG_FUNCTION_ARGS)
{
	char	   *name = tenant_name_arg(PG_GETARG_TEXT_PP(0));
	uint32		tenant_id;
	uint32		old_version;
	uint32		new_version;
	uint8		old_kek[VECPHI_KEY_LEN];
	uint8		new_kek[VECPHI_KEY_LEN];
	uint8		dek[VECPHI_KEY_LEN];
	uint8		wrapped[VECPHI_WRAPPED_KEY_LEN];
	bool		embedded = provider_is_embedded();
	bool		stale_before;
	char	   *keyring_id;

	privsql_begin(&keys_sql, InvalidOid);
	tenant_id = tenant_lock_for_admin(name, &old_version);
	new_version = old_version + 1;
	keyring_id = admin_keyring_id(false);
	if (embedded)
	{
		key_directory_check();
		keyring_owner_check(keyring_id, true);
	}

	/*
	 * Only when this transaction has not itself rotated the tenant is
	 * old_version the committed one, and a file of the version before it a
	 * leftover of a crash after an earlier rotation's commit.
	 */
	stale_before = embedded && old_version > 1 &&
		!pending_key_files_of(keyring_id, name);

	PG_TRY();
	{
		Oid			types[4] = {INT4OID, INT4OID, INT4OID, BYTEAOID};
		Datum		values[4];
		SPITupleTable *rows;
		uint64		nrows;
		uint64		i;

		kek_fetch(keyring_id, name, old_version, old_kek);
		if (embedded)
			kek_create_file(keyring_id, name, new_version, false, new_kek);
		else
			kek_run_command(keyring_id, name, new_version, new_kek);
		if (crypto_equal(old_kek, new_kek, VECPHI_KEY_LEN))
			ereport(ERROR,
					(errcode(ERRCODE_CONFIG_FILE_ERROR),
					 errmsg("key provider returned the same key-encryption key for versions %u and %u of tenant \"%s\"",
							old_version, new_version, name)));

		values[0] = Int32GetDatum(tenant_id);
		spi_run("SELECT dek_version, kek_version, wrapped_dek FROM vecphi.keyring "
				"WHERE tenant_id OPERATOR(pg_catalog.=) $1 ORDER BY dek_version FOR UPDATE",
				1, types, values, false, SPI_OK_SELECT);
		rows = SPI_tuptable;
		nrows = SPI_processed;
		for (i = 0; i < nrows; i++)
		{
			bool		isnull;
			int32		dek_version;
			int32		row_kek_version;
			bytea	   *old_wrapped;
			bool		ok;

			dek_version = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			row_kek_version = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));
			old_wrapped = DatumGetByteaPP(SPI_getbinval(rows->vals[i], rows->tupdesc, 3, &isnull));
			if ((uint32) row_kek_version != old_version)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("data key %d of tenant \"%s\" is wrapped under KEK version %d, not the current %u",
								dek_version, name, row_kek_version, old_version)));
			ok = crypto_unwrap_key(old_kek, (uint8 *) VARDATA_ANY(old_wrapped),
								   VARSIZE_ANY_EXHDR(old_wrapped), dek);
			if (!ok)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("data key %d of tenant \"%s\" cannot be unwrapped", dek_version, name),
						 errdetail("The key-encryption key from the provider is not the one that wrapped it, or the wrapped key was altered.")));
			crypto_wrap_key(new_kek, dek, wrapped);
			crypto_wipe(dek, sizeof(dek));

			values[1] = Int32GetDatum(dek_version);
			values[2] = Int32GetDatum(new_version);
			values[3] = wrapped_key_datum(wrapped);
			spi_run("UPDATE vecphi.keyring SET wrapped_dek = $4, kek_version = $3 "
					"WHERE tenant_id OPERATOR(pg_catalog.=) $1 "
					"AND dek_version OPERATOR(pg_catalog.=) $2",
					4, types, values, false, SPI_OK_UPDATE);
		}
		values[1] = Int32GetDatum(new_version);
		spi_run("UPDATE vecphi.tenants SET kek_version = $2 "
				"WHERE tenant_id OPERATOR(pg_catalog.=) $1",
				2, types, values, false, SPI_OK_UPDATE);
	}
	PG_FINALLY();
	{
		crypto_wipe(old_kek, sizeof(old_kek));
		crypto_wipe(new_kek, sizeof(new_kek));
		crypto_wipe(dek, sizeof(dek));
	}
	PG_END_TRY();

	privsql_end(&keys_sql);

	/*
	 * Every data key of the tenant is now wrapped under new_version (the loop
	 * checked each was under old_version): the older files go when this
	 * transaction commits, never before, and never if it aborts.
	 */
	if (embedded)
	{
		pending_key_file_add(kek_file_path(keyring_id, name, old_version), true);
		if (stale_before)
			pending_key_file_add(kek_file_path(keyring_id, name, old_version - 1), true);
	}
	keys_invalidate_all();
	key_event_audit(AUDIT_ACTION_KEY_ROTATE_KEK, name, new_version);
	PG_RETURN_INT32(new_version);
}

PG_FUNCTION_INFO_V1(vecphi_rotate_dek);
Datum
vecphi_rotate_dek(PG_FUNCTION_ARGS)
{
	char	   *name = tenant_name_arg(PG_GETARG_TEXT_PP(0));
	uint32		tenant_id;
	uint32		kek_version;
	uint32		new_dek;
	uint8		kek[VECPHI_KEY_LEN];
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2];

	char	   *keyring_id;

	provider_check_config();
	privsql_begin(&keys_sql, InvalidOid);
	tenant_id = tenant_lock_for_admin(name, &kek_version);
	keyring_id = admin_keyring_id(false);
	values[0] = Int32GetDatum(tenant_id);
	spi_run("SELECT coalesce(pg_catalog.max(dek_version), 0) "
			"FROM vecphi.keyring WHERE tenant_id OPERATOR(pg_catalog.=) $1",
			1, types, values, false, SPI_OK_SELECT);
	new_dek = sequence_next_past("vecphi.dek_versions", spi_int(0, 1));

	PG_TRY();
	{
		kek_fetch(keyring_id, name, kek_version, kek);
		dek_create(tenant_id, new_dek, kek_version, kek);
	}
	PG_FINALLY();
	{
		crypto_wipe(kek, sizeof(kek));
	}
	PG_END_TRY();

	values[1] = Int32GetDatum(new_dek);
	spi_run("UPDATE vecphi.tenants SET current_dek = $2 "
			"WHERE tenant_id OPERATOR(pg_catalog.=) $1",
			2, types, values, false, SPI_OK_UPDATE);
	privsql_end(&keys_sql);
	keys_invalidate_all();
	key_event_audit(AUDIT_ACTION_KEY_ROTATE_DEK, name, new_dek);
	PG_RETURN_INT32(new_dek);
}

/* Register the callbacks; called once from _PG_init. */
void
keys_init(void)
{
	CacheRegisterRelcacheCallback(keys_relcache_callback, (Datum) 0);
	RegisterXactCallback(keys_xact_callback, NULL);
	RegisterSubXactCallback(keys_subxact_callback, NULL);
}

PG_FUNCTION_INFO_V1(vecphi_shred_tenant);
Datum
vecphi_shred_tenant(PG_FUNCTION_ARGS)
{
	char	   *name = tenant_name_arg(PG_GETARG_TEXT_PP(0));
	bool		embedded = provider_is_embedded();
	Oid			types[4] = {INT4OID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4];
	uint32		tenant_id;
	uint32		kek_version;
	uint32		v;
	bool		already;
	int			ndeks;
	AuditEvent	ev;
	char	   *keyring_id;

	if (!embedded &&
		(vecphi_kek_destroy_command == NULL || vecphi_kek_destroy_command[0] == '\0'))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("vecphi.kek_destroy_command is not set"),
				 errdetail("With vecphi.kek_command as key provider, shredding a tenant needs a command that destroys its key-encryption key at the provider."),
				 errhint("Set vecphi.kek_destroy_command in postgresql.conf and reload.")));
	if (embedded)
		key_directory_check();

	privsql_begin(&keys_sql, InvalidOid);
	values[0] = CStringGetTextDatum(name);
	spi_run(TENANT_LOCK_SQL, 1, &types[1], values, false, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("tenant \"%s\" does not exist", name)));
	tenant_id = spi_int(0, 1);
	kek_version = spi_int(0, 2);
	already = spi_int(0, 3) != 0;
	keyring_id = admin_keyring_id(false);
	if (embedded)
		keyring_owner_check(keyring_id, true);

	values[0] = Int32GetDatum(tenant_id);
	spi_run("DELETE FROM vecphi.keyring WHERE tenant_id OPERATOR(pg_catalog.=) $1",
			1, types, values, false, SPI_OK_DELETE);
	ndeks = (int) SPI_processed;
	if (!already)
	{
		values[1] = CStringGetTextDatum(name);
		values[2] = Int32GetDatum(kek_version);
		values[3] = Int32GetDatum(ndeks);
		spi_run("INSERT INTO vecphi.shredded_tenants (tenant_id, tenant, kek_version, data_keys) "
				"VALUES ($1, $2, $3, $4)",
				4, types, values, false, SPI_OK_INSERT);
	}
	privsql_end(&keys_sql);

	/*
	 * Destroy every KEK version the tenant ever had (earlier ones may have
	 * been left by a crash during a rotation, and the next one by a crash
	 * during a rotation that never committed).  Key files go when this
	 * transaction commits, as superseded files do; a provider behind
	 * kek_command is asked just before the commit, so that its failure still
	 * stops the shred.  Either way an abort, of the transaction or of the
	 * subtransaction that shredded, keeps the tenant intact.  Shredding an
	 * already shredded tenant repeats the destruction, for a crash between
	 * commit and unlink.
	 */
	for (v = 1; v <= kek_version + 1; v++)
	{
		if (embedded)
		{
			pending_key_file_add(kek_file_path(keyring_id, name, v), true);
			pending_key_file_add(psprintf("%s.tmp", kek_file_path(keyring_id, name, v)), true);
		}
		else if (v <= kek_version)
			pending_key_action_add(PENDING_DESTROY_COMMAND, name, keyring_id, v);
	}
	keys_invalidate_all();
	if (already)
		ereport(NOTICE,
				(errmsg("tenant \"%s\" was already shredded; its key-encryption keys are destroyed again",
						name)));

	memset(&ev, 0, sizeof(ev));
	ev.action = AUDIT_ACTION_KEY_SHRED;
	ev.outcome = AUDIT_OUTCOME_OK;
	ev.relid = InvalidOid;
	ev.indexid = InvalidOid;
	ev.rows = ndeks;
	ev.detail = psprintf("tenant %s: %d data keys dropped, key-encryption key versions 1 to %u destroyed by %s%s",
						 name, ndeks, kek_version,
						 embedded ? "the embedded provider at commit" : "vecphi.kek_destroy_command at commit",
						 already ? " (repeated)" : "");
	audit_emit(&ev, true);
	PG_RETURN_INT32(ndeks);
}


/* ---------- keyrings (SQL) ---------- */

PG_FUNCTION_INFO_V1(vecphi_keyring_id);
Datum
vecphi_keyring_id(PG_FUNCTION_ARGS)
{
	char	   *keyring_id;

	privsql_begin(&keys_sql, InvalidOid);
	spi_run("LOCK TABLE vecphi.tenants IN SHARE ROW EXCLUSIVE MODE",
			0, NULL, NULL, false, SPI_OK_UTILITY);
	keyring_id = admin_keyring_id(true);
	privsql_end(&keys_sql);
	CacheInvalidateRelcacheByRelid(keyring_table_oid("keyring_identity"));
	PG_RETURN_TEXT_P(cstring_to_text(keyring_id));
}

/*
 * Give this database a keyring of its own: a new id, and a copy of the
 * current KEK file of every tenant that is not shredded under it.  The old
 * files are only read.  For a dump restored beside its source, or any copy
 * that must rotate and shred on its own.
 */
PG_FUNCTION_INFO_V1(vecphi_fork_keyring);
Datum
vecphi_fork_keyring(PG_FUNCTION_ARGS)
{
	char	   *old_id;
	char	   *new_id;
	SPITupleTable *rows;
	uint64		nrows;
	uint64		i;
	uint8		kek[VECPHI_KEY_LEN];
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	AuditEvent	ev;

	if (!provider_is_embedded())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("vecphi.fork_keyring() needs the embedded key provider"),
				 errdetail("With vecphi.kek_command the key management system holds the keys; vecphi cannot copy them."),
				 errhint("Have the key management system serve the keys under a new keyring id (%%k), then see docs/keys.md.")));
	key_directory_check();

	privsql_begin(&keys_sql, InvalidOid);
	spi_run("LOCK TABLE vecphi.tenants IN SHARE ROW EXCLUSIVE MODE",
			0, NULL, NULL, false, SPI_OK_UTILITY);
	old_id = admin_keyring_id(true);
	new_id = spi_outlive(keyring_id_generate());
	keyring_owner_write(new_id);
	pending_key_file_add(keyring_owner_path(new_id), false);

	spi_run("SELECT t.tenant, t.kek_version FROM vecphi.tenants t "
			"WHERE NOT EXISTS (SELECT 1 FROM vecphi.shredded_tenants s "
			"WHERE s.tenant_id OPERATOR(pg_catalog.=) t.tenant_id) ORDER BY t.tenant_id",
			0, NULL, NULL, false, SPI_OK_SELECT);
	rows = SPI_tuptable;
	nrows = SPI_processed;
	PG_TRY();
	{
		for (i = 0; i < nrows; i++)
		{
			bool		isnull;
			char	   *tenant = TextDatumGetCString(SPI_getbinval(rows->vals[i], rows->tupdesc, 1, &isnull));
			int32		v = DatumGetInt32(SPI_getbinval(rows->vals[i], rows->tupdesc, 2, &isnull));

			kek_read_file(tenant, kek_file_path(old_id, tenant, v), kek);
			kek_write_file(kek_file_path(new_id, tenant, v), kek);
			crypto_wipe(kek, sizeof(kek));
		}
	}
	PG_FINALLY();
	{
		crypto_wipe(kek, sizeof(kek));
	}
	PG_END_TRY();

	values[0] = CStringGetTextDatum(new_id);
	values[1] = CStringGetTextDatum(old_id);
	spi_run("UPDATE vecphi.keyring_identity SET keyring_id = $1, forked_from = $2",
			2, types, values, false, SPI_OK_UPDATE);
	privsql_end(&keys_sql);
	keys_invalidate_all();

	memset(&ev, 0, sizeof(ev));
	ev.action = AUDIT_ACTION_KEY_CREATE;
	ev.outcome = AUDIT_OUTCOME_OK;
	ev.rows = (int64) nrows;
	ev.detail = psprintf("keyring %s forked from keyring %s: %d tenants' key-encryption keys copied",
						 new_id, old_id, (int) nrows);
	audit_emit(&ev, false);
	PG_RETURN_TEXT_P(cstring_to_text(new_id));
}

/*
 * Make this database the owner of its keyring's key files (after a move to
 * another database or cluster).  The previous owner can no longer use
 * them.  Superuser only: it takes the files away from another database.
 */
PG_FUNCTION_INFO_V1(vecphi_adopt_keyring);
Datum
vecphi_adopt_keyring(PG_FUNCTION_ARGS)
{
	char	   *keyring_id;
	AuditEvent	ev;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only a superuser may adopt a keyring"),
				 errdetail("Adopting a keyring takes its key files away from the database that owned them.")));
	if (!provider_is_embedded())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("vecphi.adopt_keyring() needs the embedded key provider"),
				 errdetail("With vecphi.kek_command the key management system decides who may use the keys of a keyring id (%%k).")));
	key_directory_check();
	privsql_begin(&keys_sql, InvalidOid);
	keyring_id = admin_keyring_id(false);
	privsql_end(&keys_sql);
	keyring_owner_write(keyring_id);

	memset(&ev, 0, sizeof(ev));
	ev.action = AUDIT_ACTION_KEY_CREATE;
	ev.outcome = AUDIT_OUTCOME_OK;
	ev.rows = -1;
	ev.detail = psprintf("keyring %s adopted by this database", keyring_id);
	audit_emit(&ev, false);
	PG_RETURN_TEXT_P(cstring_to_text(keyring_id));
}
