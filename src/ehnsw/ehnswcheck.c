/*-------------------------------------------------------------------------
 *
 * ehnswcheck.c
 *	  vecphi.index_check(regclass): verify the structure of an ehnsw index
 *	  without decrypting anything.
 *
 * Checks: the metapage; every page is ours; every element item is whole,
 * its neighbour capacity matches its level, and a live element's envelope
 * header is sound, of the index's dimensions and of the element's tenant;
 * every edge points at an element of the same tenant on a level at least
 * as high; every entry point names a live element of its tenant at its
 * top level; every tenant with a live element has an entry point; a
 * live element's data key exists, unless its heap row is dead (rows of a
 * transaction whose rotate_dek() or create_tenant() aborted leave elements
 * under a key that never came to exist; searches skip them and VACUUM
 * removes them) or its tenant was crypto-shredded.  The key check reads
 * vecphi.keyring and unwraps nothing.
 * The first problem is raised as XX002 with a precise detail.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "ehnsw.h"
#include "keys.h"

typedef struct CheckedElement
{
	uint64		key;			/* ehnsw_location_key() */
	uint32		tenant_id;
	uint8		level;
	bool		deleted;
} CheckedElement;

static void
check_fail(Relation index, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" is corrupt", RelationGetRelationName(index)),
			 errdetail("%s", detail)));
}

/* A live element's key, copied from its page to be checked after. */
typedef struct ElementKey
{
	OffsetNumber off;
	ItemPointerData heaptid;
	uint32		tenant_id;
	uint32		dek_version;
} ElementKey;

/*
 * Check the data keys of a page's live elements: a missing one is a
 * problem only if the element's heap row is live in the statement's
 * snapshot, which is older than the keyring read that follows, so a key
 * committed with the row is always seen.
 */
static void
check_keys(Relation index, Relation heap, BlockNumber blkno, List *keys)
{
	ListCell   *lc;

	foreach(lc, keys)
	{
		ElementKey *ek = lfirst(lc);
		bool		all_dead;

		if (keys_dek_exists(ek->tenant_id, ek->dek_version))
			continue;
		if (!table_index_fetch_tuple_check(heap, &ek->heaptid, GetActiveSnapshot(),
										   &all_dead) ||
			keys_tenant_is_shredded(ek->tenant_id))
			continue;
		check_fail(index, psprintf("The value of element (%u,%u), whose heap row is live, needs data key %u of tenant #%u, which is missing from vecphi.keyring.",
								   blkno, ek->off, ek->dek_version, ek->tenant_id));
	}
}

/* Visit every element item; phase 1 records them, phase 2 checks edges. */
static void
check_elements(Relation index, Relation heap, EhnswMetaPageData *meta,
			   HTAB *elements, bool check_edges)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	BlockNumber blkno;

	for (blkno = EHNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buf = ReadBuffer(index, blkno);
		Page		page;
		OffsetNumber off;
		List	   *keys = NIL;

		LockBuffer(buf, BUFFER_LOCK_SHARE);
		if (!ehnsw_page_usable(index, buf, blkno))
		{
			/* New page left by a crash: holds nothing, links to nothing. */
			UnlockReleaseBuffer(buf);
			continue;
		}
		page = BufferGetPage(buf);
		for (off = FirstOffsetNumber; off <= PageGetMaxOffsetNumber(page); off++)
		{
			ItemId		itemid = PageGetItemId(page, off);
			EhnswElementTuple etup;
			Size		size;
			int			i;

			if (!ItemIdIsNormal(itemid))
				continue;
			etup = (EhnswElementTuple) PageGetItem(page, itemid);
			size = ItemIdGetLength(itemid);
			if (!check_edges)
			{
				CheckedElement *ce;
				bool		found;

				if (size < offsetof(EhnswElementTupleData, neighbors) ||
					etup->nslots != (etup->level + 2) * meta->m ||
					offsetof(EhnswElementTupleData, neighbors) +
					etup->nslots * sizeof(ItemPointerData) > etup->envelope_offset ||
					etup->envelope_offset > size)
					check_fail(index, psprintf("Element (%u,%u) has an inconsistent layout.", blkno, off));
				if (!etup->deleted)
				{
					EnvelopeHeader hdr;
					struct varlena *env = EhnswElementEnvelope(etup);

					if (etup->envelope_offset + VARHDRSZ > size ||
						etup->envelope_offset + VARSIZE(env) != size)
						check_fail(index, psprintf("Element (%u,%u) has a truncated envelope.", blkno, off));
					envelope_read_header(env, ENVELOPE_KIND_VECTOR, &hdr);
					if (hdr.tenant_id != etup->tenant_id || hdr.count != meta->dims)
						check_fail(index, psprintf("Element (%u,%u) holds a value of another tenant or size.", blkno, off));
					if (!ItemPointerIsValid(&etup->heaptid))
						check_fail(index, psprintf("Live element (%u,%u) has no heap row.", blkno, off));
					{
						ElementKey *ek = palloc(sizeof(ElementKey));

						ek->off = off;
						ek->heaptid = etup->heaptid;
						ek->tenant_id = hdr.tenant_id;
						ek->dek_version = hdr.dek_version;
						keys = lappend(keys, ek);
					}
				}
				{
					uint64		key = ehnsw_location_key(blkno, off);

					ce = hash_search(elements, &key, HASH_ENTER, &found);
				}
				ce->tenant_id = etup->tenant_id;
				ce->level = etup->level;
				ce->deleted = etup->deleted != 0;
				continue;
			}

			for (i = 0; i < etup->nslots; i++)
			{
				ItemPointer n = &etup->neighbors[i];
				CheckedElement *target;
				int			slot_level;
				uint64		key;

				if (!ItemPointerIsValid(n))
					continue;
				slot_level = i < 2 * meta->m ? 0 : 1 + (i - 2 * meta->m) / meta->m;
				key = ehnsw_tid_key(n);
				target = hash_search(elements, &key, HASH_FIND, NULL);
				if (target == NULL)
					check_fail(index, psprintf("Element (%u,%u) links to (%u,%u), which is not an element.",
											   blkno, off, ItemPointerGetBlockNumber(n),
											   ItemPointerGetOffsetNumber(n)));
				if (target->tenant_id != etup->tenant_id)
					check_fail(index, psprintf("Element (%u,%u) links to (%u,%u) of another tenant.",
											   blkno, off, ItemPointerGetBlockNumber(n),
											   ItemPointerGetOffsetNumber(n)));
				if (target->level < slot_level)
					check_fail(index, psprintf("Element (%u,%u) links on level %d to (%u,%u), which has level %d.",
											   blkno, off, slot_level, ItemPointerGetBlockNumber(n),
											   ItemPointerGetOffsetNumber(n), target->level));
			}
		}
		UnlockReleaseBuffer(buf);
		check_keys(index, heap, blkno, keys);
		list_free_deep(keys);
	}
}

PG_FUNCTION_INFO_V1(vecphi_index_check);
Datum
vecphi_index_check(PG_FUNCTION_ARGS)
{
	Oid			indexoid = PG_GETARG_OID(0);
	Oid			heapoid;
	Relation	heap = NULL;
	Relation	index;
	EhnswMetaPageData meta;
	HASHCTL		ctl;
	HTAB	   *elements;
	HTAB	   *tenants_seen;
	Buffer		mbuf;
	EhnswMetaPage metap;
	uint32		i;
	bool		found;
	HASH_SEQ_STATUS status;
	CheckedElement *ce;

	if (!pg_class_ownercheck(indexoid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_INDEX, get_rel_name(indexoid));
	/* The table first, as every other user of both locks them. */
	heapoid = IndexGetRelation(indexoid, true);
	if (OidIsValid(heapoid))
		heap = table_open(heapoid, AccessShareLock);
	index = relation_open(indexoid, AccessShareLock);
	if (index->rd_rel->relkind != RELKIND_INDEX ||
		index->rd_indam->ambuild != ehnswbuild || heap == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an ehnsw index", RelationGetRelationName(index))));

	/*
	 * Hold off writers so the graph holds still while we read it: VACUUM
	 * (which holds the vacuum lock for its run but the update lock only
	 * between its phases), then inserts (which share the update lock).
	 */
	LockPage(index, EHNSW_VACUUM_LOCK, ShareLock);
	LockPage(index, EHNSW_UPDATE_LOCK, ExclusiveLock);
	ehnsw_read_meta(index, &meta, NULL, 0, &found);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(CheckedElement);
	ctl.hcxt = CurrentMemoryContext;
	elements = hash_create("ehnsw check elements", 1024, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	check_elements(index, heap, &meta, elements, false);
	check_elements(index, heap, &meta, elements, true);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(uint32);
	ctl.hcxt = CurrentMemoryContext;
	tenants_seen = hash_create("ehnsw check tenants", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	mbuf = ReadBuffer(index, EHNSW_METAPAGE_BLKNO);
	LockBuffer(mbuf, BUFFER_LOCK_SHARE);
	metap = EhnswPageGetMeta(BufferGetPage(mbuf));
	if (metap->ntenants > EHNSW_MAX_TENANTS)
		check_fail(index, "The tenant directory is longer than a page.");
	for (i = 0; i < metap->ntenants; i++)
	{
		EhnswEntryPoint *ep = &metap->tenants[i];
		uint64		key = ehnsw_location_key(ep->blkno, ep->offno);

		hash_search(tenants_seen, &ep->tenant_id, HASH_ENTER, &found);
		if (found)
			check_fail(index, psprintf("Tenant #%u has two entry points.", ep->tenant_id));
		ce = hash_search(elements, &key, HASH_FIND, NULL);
		if (ce == NULL || ce->deleted || ce->tenant_id != ep->tenant_id ||
			ce->level != ep->level)
			check_fail(index, psprintf("The entry point of tenant #%u is not a live element of that tenant at its level.",
									   ep->tenant_id));
	}
	UnlockReleaseBuffer(mbuf);

	hash_seq_init(&status, elements);
	while ((ce = hash_seq_search(&status)) != NULL)
	{
		if (!ce->deleted &&
			hash_search(tenants_seen, &ce->tenant_id, HASH_FIND, NULL) == NULL)
		{
			hash_seq_term(&status);
			check_fail(index, psprintf("Tenant #%u has live elements but no entry point.", ce->tenant_id));
		}
	}

	UnlockPage(index, EHNSW_UPDATE_LOCK, ExclusiveLock);
	UnlockPage(index, EHNSW_VACUUM_LOCK, ShareLock);
	relation_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);
	PG_RETURN_BOOL(true);
}
