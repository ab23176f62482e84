/*-------------------------------------------------------------------------
 *
 * ehnsw.h
 *	  Private declarations of the ehnsw index access method: an HNSW graph
 *	  over encrypted vectors, partitioned by tenant.
 *
 * Page layout (docs/hnsw.md has the full story):
 *
 *	  block 0		metapage: magic, version, dimensions, build options and
 *					the tenant directory (one entry point per tenant)
 *	  block 1..		element pages: one item per element
 *
 * An element item holds its level, tenant, heap TID, its neighbour lists
 * (fixed capacity: 2m at level 0, m above) and the value's ciphertext
 * envelope exactly as it is in the heap.  No plaintext is ever written to
 * a page: distances are computed on vectors decrypted in backend memory
 * and wiped afterwards.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_EHNSW_H
#define VECPHI_EHNSW_H

#include "access/amapi.h"
#include "access/generic_xlog.h"
#include "access/reloptions.h"
#include "lib/pairingheap.h"
#include "storage/bufmgr.h"
#include "utils/hsearch.h"
#include "utils/relcache.h"

#include "envelope.h"

/* ---------- limits and defaults ---------- */

#define EHNSW_DEFAULT_M				16
#define EHNSW_MIN_M					2
#define EHNSW_MAX_M					100
#define EHNSW_DEFAULT_EF_CONSTRUCTION	64
#define EHNSW_MIN_EF_CONSTRUCTION	4
#define EHNSW_MAX_EF_CONSTRUCTION	1000
#define EHNSW_DEFAULT_EF_SEARCH		40
#define EHNSW_MIN_EF_SEARCH			1
#define EHNSW_MAX_EF_SEARCH			1000
#define EHNSW_MAX_LEVEL				15
#define EHNSW_DEFAULT_SCAN_BUDGET	20000

/* ---------- identifiers ---------- */

#define EHNSW_MAGIC			0x45484E57	/* "EHNW" */
#define EHNSW_VERSION		1
#define EHNSW_PAGE_ID		0xFF91	/* in the special space, for pg_filedump */

#define EHNSW_METAPAGE_BLKNO	0

/*
 * Heavyweight page locks used as the index's locks (their block numbers
 * name locks, not pages; docs/hnsw.md, "Locking"): the update lock, shared
 * by inserts, exclusive to change an entry point and for VACUUM's
 * barriers; and the vacuum lock, held by VACUUM for its run so that
 * index_check never sees a VACUUM half-done.
 */
#define EHNSW_UPDATE_LOCK		EHNSW_METAPAGE_BLKNO
#define EHNSW_VACUUM_LOCK		1

#define EHNSW_PAGE_META		0x0001
#define EHNSW_PAGE_ELEMENTS	0x0002

/* Support function 1 of each operator class returns its metric. */
#define EHNSW_METRIC_PROC	1
#define EHNSW_METRIC_L2		1
#define EHNSW_METRIC_COSINE	2
#define EHNSW_METRIC_IP		3

/* Phases reported in pg_stat_progress_create_index. */
#define EHNSW_PHASE_LOAD	2
#define EHNSW_PHASE_WRITE	3

/* ---------- on-disk structures ---------- */

typedef struct EhnswPageOpaqueData
{
	uint16		flags;
	uint16		page_id;		/* EHNSW_PAGE_ID */
} EhnswPageOpaqueData;

typedef EhnswPageOpaqueData *EhnswPageOpaque;

#define EhnswPageGetOpaque(page) \
	((EhnswPageOpaque) PageGetSpecialPointer(page))

/* One tenant's graph: where its search starts. */
typedef struct EhnswEntryPoint
{
	uint32		tenant_id;
	BlockNumber blkno;
	OffsetNumber offno;
	uint16		level;
} EhnswEntryPoint;

typedef struct EhnswMetaPageData
{
	uint32		magic;
	uint32		version;
	uint32		dims;
	uint16		m;
	uint16		ef_construction;
	int32		metric;
	BlockNumber insert_blkno;	/* last page that had room; a hint */
	uint32		ntenants;
	EhnswEntryPoint tenants[FLEXIBLE_ARRAY_MEMBER];
} EhnswMetaPageData;

typedef EhnswMetaPageData *EhnswMetaPage;

#define EhnswPageGetMeta(page) ((EhnswMetaPage) PageGetContents(page))

/* What PageGetFreeSpace says of an empty element page. */
#define EHNSW_EMPTY_PAGE_FREE_SPACE \
	(BLCKSZ - SizeOfPageHeaderData - MAXALIGN(sizeof(EhnswPageOpaqueData)) - \
	 sizeof(ItemIdData))

/* How many tenants the metapage's directory can hold. */
#define EHNSW_MAX_TENANTS \
	((BLCKSZ - MAXALIGN(SizeOfPageHeaderData) - \
	  MAXALIGN(sizeof(EhnswPageOpaqueData)) - \
	  offsetof(EhnswMetaPageData, tenants)) / sizeof(EhnswEntryPoint))

/* An element item.  Neighbours, then the envelope (a varlena), follow. */
typedef struct EhnswElementTupleData
{
	uint8		level;
	uint8		deleted;		/* heap row gone; bytes below zeroed */
	uint16		nslots;			/* neighbour capacity: (level + 2) * m */
	uint32		tenant_id;
	ItemPointerData heaptid;
	uint16		envelope_offset;	/* from the start of the item */
	ItemPointerData neighbors[FLEXIBLE_ARRAY_MEMBER];
} EhnswElementTupleData;

typedef EhnswElementTupleData *EhnswElementTuple;

#define EhnswElementEnvelope(etup) \
	((struct varlena *) ((char *) (etup) + (etup)->envelope_offset))

/* Neighbour slots of a level within an element's list. */
#define EhnswLevelSlots(m, level)	((level) == 0 ? 2 * (m) : (m))
#define EhnswLevelOffset(m, level)	((level) == 0 ? 0 : 2 * (m) + ((level) - 1) * (m))

/* ---------- options ---------- */

typedef struct EhnswOptions
{
	int32		vl_len_;		/* varlena header (do not touch directly!) */
	int			m;
	int			ef_construction;
} EhnswOptions;

/* ---------- in-memory structures ---------- */

/*
 * An element's location (block, offset) as one hash key, the key of every
 * hash table of elements in the index code: the block number above, the
 * offset below.
 */
static inline uint64
ehnsw_location_key(BlockNumber blkno, OffsetNumber offno)
{
	return ((uint64) blkno << 16) | offno;
}

/* The same key, of an element's TID. */
static inline uint64
ehnsw_tid_key(ItemPointer tid)
{
	return ehnsw_location_key(ItemPointerGetBlockNumber(tid),
							  ItemPointerGetOffsetNumber(tid));
}

/* An element loaded from disk for one operation, plaintext decrypted. */
typedef struct EhnswElement
{
	ItemPointerData tid;		/* where the element lives in the index */
	ItemPointerData heaptid;
	uint32		tenant_id;
	uint8		level;
	bool		deleted;
	bool		returned;		/* a scan has returned it already */
	bool		keyless;		/* its data key does not exist: never
								 * decrypted, skipped like a deleted one */
	uint16		nslots;
	ItemPointerData *neighbors; /* copy, nslots entries */
	float4	   *x;				/* plaintext, NULL if deleted or skipped; in a
								 * scan, the state's scratch buffer (see
								 * EhnswState.query) */
	double		qdist;			/* in a scan: distance to the query */
} EhnswElement;

/* The element table's entry: an element by its location (ehnswvisit.c). */
typedef struct EhnswElementEntry
{
	uint64		key;			/* ehnsw_location_key() */
	EhnswElement *element;		/* NULL until loaded */
	uint32		visit_stamp;	/* the last search that visited it */
	char		status;			/* simplehash's */
} EhnswElementEntry;

/* A candidate in a search: an element and its distance to the query. */
typedef struct EhnswCandidate
{
	pairingheap_node near_node; /* in the "nearest first" heap */
	pairingheap_node far_node;	/* in the "farthest first" heap */
	EhnswElement *element;
	double		distance;
} EhnswCandidate;

/* What a level-0 search leaves for a scan that goes on (ehnswscan.c). */
typedef struct EhnswSearchRest
{
	pairingheap *frontier;		/* candidates not yet expanded, nearest first */
	List	   *discarded;		/* found, but not among the best ef */
	uint32		visit_stamp;	/* marks what this search visited; 0 = new */
} EhnswSearchRest;

/*
 * Plaintext buffers of one size, wiped when the memory context that holds
 * them (and this list) is reset or deleted, an error's unwinding included.
 * Everything the callback touches lives in that context: never state on a
 * stack frame that an error may already have left.
 */
typedef struct EhnswWipeList
{
	MemoryContextCallback callback;
	MemoryContext cxt;
	List	   *buffers;
	Size		bytes;			/* size of every buffer */
} EhnswWipeList;

/*
 * A graph being built in memory (ehnswbuild.c).  Elements get their final
 * TIDs as they are added, by packing items into pages in order exactly as
 * PageAddItem will, so neighbour lists need no translation when the pages
 * are written.
 */
typedef struct EhnswBuildGraph
{
	MemoryContext cxt;			/* everything below; plaintexts wiped */
	HTAB	   *elements;		/* EhnswBuildEntry by TID */
	List	   *items;			/* EhnswBuildItem *, in TID order */
	EhnswWipeList *plaintexts;	/* decrypted vectors, in cxt */
	uint32		ntenants;
	EhnswEntryPoint *tenants;	/* EHNSW_MAX_TENANTS entries */
	BlockNumber blkno;			/* page being filled */
	OffsetNumber offno;			/* last offset used on it */
	Size		free;			/* what PageAddItem would still accept */
	Size		memory_used;
	Size		memory_limit;
} EhnswBuildGraph;

/* Hash entry of an in-memory graph: an element by its TID. */
typedef struct EhnswBuildEntry
{
	uint64		key;
	struct EhnswBuildItem *item;
} EhnswBuildEntry;

/* One element of an in-memory graph: its item and its loaded form. */
typedef struct EhnswBuildItem
{
	EhnswElementTuple etup;		/* neighbour lists updated in place */
	Size		size;
	EhnswElement *element;		/* neighbors points into etup */
} EhnswBuildItem;

/*
 * State of one insert, build step or scan: the index, its parameters, a
 * memory context reset per operation, and the elements loaded so far (also
 * the visited set of a search).  Plaintext is kept in an arena that is
 * wiped when the context is reset.
 */
typedef struct EhnswState
{
	Relation	index;
	uint32		dims;
	int			m;
	int			ef_construction;
	int			metric;
	MemoryContext opcxt;
	struct ehnsw_elements_hash *elements;	/* EhnswElementEntry by location:
											 * ehnswvisit.c */
	MemoryContext elements_cxt; /* holds it; outlives opcxt's resets */
	EhnswWipeList *plaintexts;	/* decrypted vectors, in opcxt */
	uint64		ndecrypted;		/* elements decrypted so far */
	EhnswBuildGraph *graph;		/* set while building in memory */
	BlockNumber nblocks;		/* index size last seen; grows, never shrinks */
	uint32		tenant_id;		/* only this tenant's vectors are decrypted;
								 * 0: any (vacuum) */
	bool		traverse_deleted;	/* inserts and VACUUM's repair: walk
									 * through elements marked deleted but not
									 * yet removed */

	/*
	 * A scan's query (ehnsw_state_set_query), or NULL.  When set, an element
	 * is decrypted into the one scratch buffer, its distance to the query is
	 * kept in qdist, and its x only says that it has a value: a scan never
	 * compares two elements, so it keeps no plaintext of them.
	 */
	const float4 *query;
	float4	   *scratch;		/* in opcxt, on the wipe list */

	/*
	 * The data key of the last element decrypted: an element under the same
	 * key is decrypted straight from the shared page (ehnsw_load_element).
	 */
	uint32		hint_tenant_id;
	uint32		hint_dek_version;

	/* The entry ehnsw_visit last found, for the load that follows. */
	uint64		last_key;
	EhnswElementEntry *last_entry;
} EhnswState;

/* ---------- ehnsw.c ---------- */

extern void ehnsw_init(void);

/* ---------- ehnswsettings.c ---------- */

extern int	ehnsw_ef_search;
extern int	ehnsw_scan_budget;
extern int	ehnsw_debug_vacuum_pause_lock;
extern int	ehnsw_debug_insert_pause_lock;
extern int	ehnsw_debug_insert_level;
extern void ehnsw_settings_init(void);
extern void ehnsw_debug_pause(int key);

/* ---------- ehnswutils.c ---------- */

extern EhnswWipeList *ehnsw_wipe_list_create(MemoryContext cxt, Size bytes);
extern void ehnsw_wipe_list_add(EhnswWipeList *list, void *buffer);
extern void ehnsw_state_init(EhnswState *state, Relation index, bool need_meta);
extern void ehnsw_state_reset(EhnswState *state);
extern void ehnsw_init_page(Page page, uint16 flags);
extern void ehnsw_check_page(Relation index, Buffer buf, BlockNumber blkno);
extern bool ehnsw_page_usable(Relation index, Buffer buf, BlockNumber blkno);
extern void ehnsw_read_meta(Relation index, EhnswMetaPageData *meta,
							EhnswEntryPoint *entry, uint32 tenant_id,
							bool *found);
extern void ehnsw_set_entry_point(Relation index, uint32 tenant_id,
								  ItemPointer tid, int level,
								  bool only_if_higher);
extern EhnswElement *ehnsw_load_element(EhnswState *state, ItemPointer tid,
										bool decrypt);
extern float4 *ehnsw_decrypt_vector(EhnswState *state,
									const struct varlena *env,
									uint32 *tenant_id);
extern double ehnsw_distance(EhnswState *state, const float4 *a,
							 const float4 *b);
extern void ehnsw_state_set_query(EhnswState *state, const float4 *q);
extern double ehnsw_element_distance(EhnswState *state, const float4 *q,
									 EhnswElement *element);
extern bool ehnsw_indexable(EhnswState *state, const float4 *x);
extern List *ehnsw_search_layer(EhnswState *state, const float4 *q,
								List *entries, int ef, int level,
								uint32 tenant_id, EhnswSearchRest *rest);
extern int	ehnsw_candidate_near_cmp(const pairingheap_node *a,
									 const pairingheap_node *b, void *arg);
extern EhnswCandidate *ehnsw_make_candidate(EhnswState *state,
											EhnswElement *element,
											const float4 *q);
extern List *ehnsw_entry_candidates(EhnswState *state, EhnswElement *epel,
									int eplevel, const float4 *q,
									int *level);
extern int	ehnsw_meta_metric(Relation index);
extern int	ehnsw_candidate_cmp(const ListCell *a, const ListCell *b);

/* ---------- ehnswvisit.c ---------- */

extern void ehnsw_elements_init(EhnswState *state, MemoryContext cxt);
extern void ehnsw_elements_clear(EhnswState *state);
extern EhnswElementEntry *ehnsw_element_entry(EhnswState *state, uint64 key);
extern void ehnsw_element_forget(EhnswState *state, uint64 key);
extern bool ehnsw_visit(EhnswState *state, ItemPointer tid, uint32 stamp);
extern Buffer ehnsw_read_element_buffer(Relation index, BlockNumber blkno);

/* ---------- ehnswinsert.c ---------- */

extern void ehnsw_check_dims(uint32 dims, int m);
extern List *ehnsw_select_neighbors(EhnswState *state, List *candidates,
									int max);

/* What ehnsw_write_links did. */
typedef enum EhnswLinkResult
{
	EHNSW_LINKS_DONE,			/* written (or the link was there already) */
	EHNSW_LINKS_GONE,			/* the element was deleted or its slot reused */
	EHNSW_LINKS_CHANGED,		/* the level is no longer as expected */
	EHNSW_LINKS_FULL			/* no free slot for the link to add */
} EhnswLinkResult;

extern bool ehnsw_read_links(EhnswState *state, EhnswElement *element,
							 int level, ItemPointerData *links);
extern EhnswLinkResult ehnsw_write_links(EhnswState *state,
										 EhnswElement *element, int level,
										 const ItemPointerData *expect,
										 const ItemPointerData *links,
										 ItemPointer add);
extern bool ehnsw_write_neighbors_from(EhnswState *state,
									   EhnswElement *element, int level,
									   const ItemPointerData *expect,
									   List *neighbors);
extern bool ehnsw_write_neighbors(EhnswState *state, EhnswElement *element,
								  int level, List *neighbors);
extern bool ehnsw_add_connection(EhnswState *state, EhnswElement *n,
								 EhnswElement *newel, double distance,
								 int level);
extern bool ehnsw_insert_value(EhnswState *state, Datum value,
							   ItemPointer heaptid);
extern bool ehnswinsert(Relation index, Datum *values, bool *isnull,
						ItemPointer heap_tid, Relation heap,
						IndexUniqueCheck checkUnique, bool indexUnchanged,
						struct IndexInfo *indexInfo);

/* ---------- ehnswbuild.c ---------- */

extern IndexBuildResult *ehnswbuild(Relation heap, Relation index,
									struct IndexInfo *indexInfo);
extern void ehnswbuildempty(Relation index);

/* ---------- ehnswscan.c ---------- */

extern IndexScanDesc ehnswbeginscan(Relation index, int nkeys, int norderbys);
extern void ehnswrescan(IndexScanDesc scan, ScanKey keys, int nkeys,
						ScanKey orderbys, int norderbys);
extern bool ehnswgettuple(IndexScanDesc scan, ScanDirection dir);
extern void ehnswendscan(IndexScanDesc scan);

/* ---------- ehnswvacuum.c ---------- */

extern IndexBulkDeleteResult *ehnswbulkdelete(IndexVacuumInfo *info,
											  IndexBulkDeleteResult *stats,
											  IndexBulkDeleteCallback callback,
											  void *callback_state);
extern IndexBulkDeleteResult *ehnswvacuumcleanup(IndexVacuumInfo *info,
												 IndexBulkDeleteResult *stats);

/*
 * Called at the end of every amvacuumcleanup of an ehnsw index (not in an
 * ANALYZE-only pass), after VACUUM's heap passes, autovacuum's included.
 * The erasure module registers it (scrub_init()) to scrub the table's
 * pages under autovacuum, which bypasses the ProcessUtility hook.
 */
typedef void (*EhnswVacuumCleanupHook) (IndexVacuumInfo *info,
										IndexBulkDeleteResult *stats);
extern void ehnsw_set_vacuum_cleanup_hook(EhnswVacuumCleanupHook hook);

#endif							/* VECPHI_EHNSW_H */
