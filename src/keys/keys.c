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
 * Files.  This one: the tenant catalog and the caches (tenants, keyring
 * id, unwrapped DEKs), keys_get_dek() and keys_dek_exists(), keys_init().
 * keyprovider.c: the KEK providers (embedded key files, kek_command), the
 * keyring owner file, and the key actions left for the end of the
 * transaction with their callbacks.  keyadmin.c: the SQL functions that
 * create, rotate and shred keys and fork or adopt a keyring.
 * keysettings.c: the provider's settings.  keysint.h: what they share.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "crypto.h"
#include "keys.h"
#include "keysint.h"
#include "stats.h"
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
Oid
keys_table_oid(const char *relname)
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
	Oid			relid = keys_table_oid("tenants");
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
	relid = keys_table_oid("shredded_tenants");
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
	relid = keys_table_oid("keyring_identity");
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
void
keys_tenant_shredded_error(const char *tenant)
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

/* Is s a keyring id: exactly KEYRING_ID_LEN lower-case hex digits? */
bool
keys_keyring_id_is_valid(const char *s)
{
	return strlen(s) == KEYRING_ID_LEN &&
		strspn(s, "0123456789abcdef") == KEYRING_ID_LEN;
}

/* The keyring id the tenant cache holds; an error if there is none. */
static const char *
cached_keyring_id_or_error(void)
{
	if (!keys_keyring_id_is_valid(cached_keyring_id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database's vecphi keyring has no id"),
				 errdetail("vecphi.keyring_identity is empty or malformed; key files are named by the keyring id."),
				 errhint("Restore vecphi.keyring_identity with the rest of the keyring, or see docs/keys.md.")));
	return cached_keyring_id;
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

	relid = keys_table_oid("keyring");
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
	DataKey    *cached;
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
	 * keys_cached_dek() takes in invalidations first, so a shred committed by
	 * another backend empties our cache before we use a cached key (see the
	 * file header).  Without pending messages this only reads a flag.
	 */
	cached = keys_cached_dek(tenant_id, dek_version);
	if (cached != NULL)
		return cached;
	stats_dek_miss();
	memset(&id, 0, sizeof(id));
	id.tenant_id = tenant_id;
	id.dek_version = dek_version;

	tenant = tenant_lookup(tenant_id);
	if (tenant == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("tenant #%u has no keys", tenant_id),
				 errdetail("The value was encrypted for a tenant that is not in vecphi.keyring, or whose keys were destroyed.")));
	strlcpy(tenant_name, tenant->name, sizeof(tenant_name));
	if (tenant->shredded)
		keys_tenant_shredded_error(tenant_name);
	strlcpy(keyring_id, cached_keyring_id_or_error(), sizeof(keyring_id));

	wrapped = keyring_read_wrapped(tenant_id, dek_version, &kek_version);
	if (wrapped == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("data key %u of tenant \"%s\" is missing", dek_version, tenant_name),
				 errdetail("vecphi.keyring has no such key; it was never created here or has been destroyed.")));

	keys_kek_fetch(keyring_id, tenant_name, kek_version, kek);
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

/*
 * The DEK of a tenant and version if it is unwrapped in the cache, else
 * NULL; never reads a table or unwraps anything.  Takes in invalidations
 * first, as keys_get_dek(), so a key a committed shred destroyed is never
 * returned.  For ehnsw's scans, which look up the key of the last element
 * they decrypted before reading the next one in place under a buffer lock.
 */
DataKey *
keys_cached_dek(uint32 tenant_id, uint32 dek_version)
{
	DataKeyId	id;
	DataKeyEntry *entry;

	AcceptInvalidationMessages();
	key_caches_prepare();
	memset(&id, 0, sizeof(id));
	id.tenant_id = tenant_id;
	id.dek_version = dek_version;
	entry = hash_search(data_keys, &id, HASH_FIND, NULL);
	if (entry == NULL)
		return NULL;
	stats_dek_hit();
	return &entry->key;
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


/* Register the callbacks; called once from _PG_init. */
void
keys_init(void)
{
	CacheRegisterRelcacheCallback(keys_relcache_callback, (Datum) 0);
	keys_pending_init();
}
