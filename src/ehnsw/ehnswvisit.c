/*-------------------------------------------------------------------------
 *
 * ehnswvisit.c
 *	  The element table of an operation: every element it loaded, by
 *	  location, with the mark of the last search that visited it; and the
 *	  buffers this backend last found element pages in.
 *
 * A search looks up each neighbour of each element it expands (m to 2m
 * per element, thousands per scan), so the table is PostgreSQL's
 * simplehash keyed on the packed location (ehnsw_location_key()), not a
 * dynahash.  It lives beside the operation's memory context, not in it:
 * ehnsw_state_reset() empties it for the next operation without freeing
 * it (only a table that grew unusually large is given back), and the
 * elements it points to live in the operation's context.
 *
 * simplehash moves entries when it inserts or deletes: a pointer to an
 * entry is valid until the next ehnsw_element_entry() that adds an element
 * or the next ehnsw_element_forget().  The one pointer kept across calls,
 * the entry ehnsw_visit() last found (EhnswState.last_entry), is replaced
 * or cleared by exactly those calls.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgstat.h"
#include "storage/bufmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "ehnsw.h"

/* How many entries a new table has room for before it grows. */
#define EHNSW_ELEMENTS_INITIAL	1024

/* A table larger than this is freed, not emptied, between operations. */
#define EHNSW_ELEMENTS_KEEP		65536

/* murmurhash3's 64-bit finaliser: locations differ in few low bits. */
static inline uint32
element_key_hash(uint64 key)
{
	key ^= key >> 33;
	key *= UINT64CONST(0xff51afd7ed558ccd);
	key ^= key >> 33;
	key *= UINT64CONST(0xc4ceb9fe1a85ec53);
	key ^= key >> 33;
	return (uint32) key;
}

#define SH_PREFIX		ehnsw_elements
#define SH_ELEMENT_TYPE	EhnswElementEntry
#define SH_KEY_TYPE		uint64
#define SH_KEY			key
#define SH_HASH_KEY(tb, key)	element_key_hash(key)
#define SH_EQUAL(tb, a, b)		((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
/* simplehash.h (PostgreSQL 15) shadows a local in its delete */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow=compatible-local"
#endif
#include "lib/simplehash.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* A new, empty element table in cxt (which must outlive the operations). */
void
ehnsw_elements_init(EhnswState *state, MemoryContext cxt)
{
	state->elements_cxt = cxt;
	state->elements = ehnsw_elements_create(cxt, EHNSW_ELEMENTS_INITIAL, NULL);
	state->last_entry = NULL;
}

/* Empty the table for the next operation. */
void
ehnsw_elements_clear(EhnswState *state)
{
	if (state->elements->size > EHNSW_ELEMENTS_KEEP)
	{
		ehnsw_elements_destroy(state->elements);
		state->elements = ehnsw_elements_create(state->elements_cxt,
												EHNSW_ELEMENTS_INITIAL, NULL);
	}
	else
		ehnsw_elements_reset(state->elements);
	state->last_entry = NULL;
}

/*
 * The entry of the element at key, added (with no element, never visited)
 * if the table has none.  The entry ehnsw_visit() found last is reused
 * without a lookup.
 */
EhnswElementEntry *
ehnsw_element_entry(EhnswState *state, uint64 key)
{
	EhnswElementEntry *entry;
	bool		found;

	if (state->last_entry != NULL && state->last_key == key)
		return state->last_entry;
	entry = ehnsw_elements_insert(state->elements, key, &found);
	if (!found)
	{
		entry->element = NULL;
		entry->visit_stamp = 0;
		/* Entries may have moved: the remembered one with them. */
		state->last_entry = NULL;
	}
	return entry;
}

/* Drop the entry of the element at key. */
void
ehnsw_element_forget(EhnswState *state, uint64 key)
{
	ehnsw_elements_delete(state->elements, key);
	state->last_entry = NULL;
}

/* Mark an element visited by the current search; false if it was. */
bool
ehnsw_visit(EhnswState *state, ItemPointer tid, uint32 stamp)
{
	uint64		key = ehnsw_tid_key(tid);
	EhnswElementEntry *entry = ehnsw_element_entry(state, key);

	state->last_key = key;
	state->last_entry = entry;
	if (entry->visit_stamp == stamp)
		return false;
	entry->visit_stamp = stamp;
	return true;
}

/*
 * Which buffer held each recently read element page, for this backend's
 * searches, scans of later queries included: the graph's upper levels and
 * the elements around popular regions are read by many searches.  Direct
 * mapped by block number; a slot is only a hint, which ReadRecentBuffer()
 * checks against the buffer's tag under the buffer header lock, so a stale
 * slot costs one failed check and a normal read, and a page is always the
 * one ReadBuffer() would return.  (A page found this way does not have its
 * usage count raised, as ReadBuffer() would: its misses still do.)  At 20
 * bytes a slot, 80 kB a backend; measured on 20,000 Fashion-MNIST vectors,
 * 40-45 % of element reads find their page here.
 */
#define EHNSW_RECENT_BUFFERS	4096

typedef struct EhnswRecentBuffer
{
	RelFileNode node;
	BlockNumber blkno;
	Buffer		buffer;
} EhnswRecentBuffer;

static EhnswRecentBuffer *recent_buffers = NULL;

/*
 * ReadBuffer() of an element page, without the buffer mapping lookup when
 * the page is still in the buffer this backend last found it in.
 */
Buffer
ehnsw_read_element_buffer(Relation index, BlockNumber blkno)
{
	EhnswRecentBuffer *slot;
	Buffer		buf;

	if (RelationUsesLocalBuffers(index))
		return ReadBuffer(index, blkno);
	if (recent_buffers == NULL)
	{
		recent_buffers = MemoryContextAlloc(TopMemoryContext,
											EHNSW_RECENT_BUFFERS * sizeof(EhnswRecentBuffer));
		memset(recent_buffers, 0, EHNSW_RECENT_BUFFERS * sizeof(EhnswRecentBuffer));
	}
	slot = &recent_buffers[blkno % EHNSW_RECENT_BUFFERS];
	if (slot->buffer != InvalidBuffer && slot->blkno == blkno &&
		RelFileNodeEquals(slot->node, index->rd_node) &&
		ReadRecentBuffer(index->rd_node, MAIN_FORKNUM, blkno, slot->buffer))
	{
		/* What ReadBuffer() counts for a page found in shared buffers */
		pgstat_count_buffer_read(index);
		pgstat_count_buffer_hit(index);
		return slot->buffer;
	}
	buf = ReadBuffer(index, blkno);
	slot->node = index->rd_node;
	slot->blkno = blkno;
	slot->buffer = buf;
	return buf;
}
