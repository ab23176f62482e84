/*-------------------------------------------------------------------------
 *
 * ehnswscan.c
 *	  Scanning an ehnsw index: ORDER BY col <op> query LIMIT k.
 *
 * The query vector is either an evector, which must be encrypted under
 * the claimant's tenant (the claims are checked before anything is
 * decrypted), or a plaintext evector_query (the ordering key's subtype
 * says which), for which the claims name the tenant.  Either way the scan
 * walks the claimant tenant's graph only: it never loads, decrypts or
 * returns an element of another tenant, whatever row-level security says.
 *
 * The first vecphi.ef_search rows come from HNSW's search, nearest first.
 * When the executor asks for more (a WHERE clause or row-level security
 * discarded rows, or LIMIT is larger than ef_search), the scan goes on
 * from where the search stopped: another round of HNSW's search, entered
 * from the candidates the last round had not expanded and those it had
 * pushed out of its best ef_search, skipping what it visited.  Each round
 * returns its rows nearest first; across rounds the order is close to,
 * not exactly, distance order ("relaxed", like pgvector's iterative
 * scans).  vecphi.scan_budget bounds how many more elements a
 * scan may examine, so a filter that matches nothing cannot walk the
 * whole graph.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relscan.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "claims.h"
#include "ehnsw.h"
#include "evector.h"
#include "report.h"
#include "vecphi.h"

typedef struct EhnswScanOpaqueData
{
	EhnswState	state;
	bool		searched;
	float4	   *q;				/* query plaintext (wiped with the state) */
	uint32		tenant_id;
	List	   *results;		/* first ef_search candidates, nearest first */
	int			next;
	EhnswSearchRest rest;		/* for going on past them */
	uint64		decrypted_first;	/* elements decrypted by the first round */
	int64		returned;		/* rows handed to the executor */
} EhnswScanOpaqueData;

typedef EhnswScanOpaqueData *EhnswScanOpaque;

IndexScanDesc
ehnswbeginscan(Relation index, int nkeys, int norderbys)
{
	IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
	EhnswScanOpaque so = palloc0(sizeof(EhnswScanOpaqueData));

	ehnsw_state_init(&so->state, index, true);
	scan->opaque = so;
	return scan;
}

void
ehnswrescan(IndexScanDesc scan, ScanKey keys, int nkeys, ScanKey orderbys,
			int norderbys)
{
	EhnswScanOpaque so = (EhnswScanOpaque) scan->opaque;

	if (orderbys && scan->numberOfOrderBys > 0)
		memmove(scan->orderByData, orderbys,
				scan->numberOfOrderBys * sizeof(ScanKeyData));
	ehnsw_state_reset(&so->state);
	so->searched = false;
	so->q = NULL;
	so->results = NIL;
	so->next = 0;
	memset(&so->rest, 0, sizeof(so->rest));
	so->decrypted_first = 0;
	so->returned = 0;
}

/*
 * The plaintext of the scan's query, in the operation's memory (wiped with
 * it), and the tenant whose graph to search.  An evector is decrypted for
 * its owner, who must be the claimant; an evector_query needs no
 * decryption and searches the claimant's graph.
 */
static float4 *
ehnsw_scan_query(IndexScanDesc scan, uint32 *tenant_id)
{
	EhnswState *state = &((EhnswScanOpaque) scan->opaque)->state;
	ScanKey		key = &scan->orderByData[0];
	Oid			keytype = scan->indexRelation->rd_opcintype[0];
	struct varlena *env;
	EnvelopeHeader hdr;

	if (OidIsValid(key->sk_subtype) && key->sk_subtype != keytype)
	{
		EvectorQuery *query;
		float4	   *q;

		if (!evector_query_is_type(key->sk_subtype))
			elog(ERROR, "ehnsw cannot order by a value of type %s",
				 format_type_be(key->sk_subtype));
		*tenant_id = claims_require_tenant_id();
		query = DatumGetEvectorQueryP(key->sk_argument);
		if ((uint32) query->dim != state->dims)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("expected %u dimensions, not %d", state->dims, query->dim)));
		q = palloc(sizeof(float4) * query->dim);
		memcpy(q, query->x, sizeof(float4) * query->dim);
		ehnsw_wipe_list_add(state->plaintexts, q);
		return q;
	}

	env = (struct varlena *) PG_DETOAST_DATUM(key->sk_argument);
	envelope_read_header(env, ENVELOPE_KIND_VECTOR, &hdr);
	envelope_check_claimant(&hdr, ENVELOPE_KIND_VECTOR);
	return ehnsw_decrypt_vector(state, env, tenant_id);
}

/* Run the HNSW search for the query; results go to so->results. */
static void
ehnsw_search(IndexScanDesc scan)
{
	EhnswScanOpaque so = (EhnswScanOpaque) scan->opaque;
	EhnswState *state = &so->state;
	float4	   *q;
	uint32		tenant_id;
	EhnswMetaPageData meta;
	EhnswEntryPoint entry;
	bool		found;
	ItemPointerData etid;
	EhnswElement *epel;
	List	   *ep;
	int			l;
	int			top;
	int			attempt;

	if (scan->numberOfOrderBys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot scan an ehnsw index without ORDER BY")));
	if (scan->orderByData[0].sk_flags & SK_ISNULL)
		return;

	q = ehnsw_scan_query(scan, &tenant_id);
	if (!ehnsw_indexable(state, q))
		return;
	state->tenant_id = tenant_id;
	ehnsw_state_set_query(state, q);
	so->q = q;
	so->tenant_id = tenant_id;

	/*
	 * VACUUM names a new entry point before it deletes the old one, so an
	 * entry point found deleted was read just before that: read again.
	 */
	for (attempt = 0;; attempt++)
	{
		ehnsw_read_meta(scan->indexRelation, &meta, &entry, tenant_id, &found);
		if (!found)
			return;
		ItemPointerSet(&etid, entry.blkno, entry.offno);
		epel = ehnsw_load_element(state, &etid, true);
		if (epel->tenant_id == tenant_id && (epel->x != NULL || epel->keyless))
			break;
		if (attempt == 3)
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("index \"%s\" has an invalid entry point for a tenant",
							RelationGetRelationName(scan->indexRelation)),
					 errhint("Please REINDEX it.")));
	}
	ep = ehnsw_entry_candidates(state, epel, entry.level, q, &top);
	if (ep == NIL)
		return;
	for (l = top; l > 0; l--)
		ep = ehnsw_search_layer(state, q, ep, 1, l, tenant_id, NULL);
	so->results = ehnsw_search_layer(state, q, ep, ehnsw_ef_search, 0, tenant_id,
									 &so->rest);
	so->decrypted_first = state->ndecrypted;
}

/*
 * Go on past the results so far: one more HNSW search round of ef_search,
 * entered from the candidates the last round left unexpanded or pushed
 * out, keeping what was visited.  Returns false when nothing is left or
 * vecphi.scan_budget is spent.
 */
static bool
ehnsw_search_more(EhnswScanOpaque so)
{
	EhnswState *state = &so->state;
	List	   *entries = NIL;
	ListCell   *lc;

	if (so->rest.frontier == NULL ||
		state->ndecrypted - so->decrypted_first >= (uint64) ehnsw_scan_budget)
		return false;
	while (!pairingheap_is_empty(so->rest.frontier))
		entries = lappend(entries,
						  pairingheap_container(EhnswCandidate, near_node,
												pairingheap_remove_first(so->rest.frontier)));
	foreach(lc, so->rest.discarded)
		entries = lappend(entries, lfirst(lc));
	if (entries == NIL)
		return false;
	so->results = ehnsw_search_layer(state, so->q, entries, ehnsw_ef_search, 0,
									 so->tenant_id, &so->rest);
	so->next = 0;
	return so->results != NIL;
}

bool
ehnswgettuple(IndexScanDesc scan, ScanDirection dir)
{
	EhnswScanOpaque so = (EhnswScanOpaque) scan->opaque;

	if (!so->searched)
	{
		MemoryContext old = MemoryContextSwitchTo(so->state.opcxt);

		ehnsw_search(scan);
		MemoryContextSwitchTo(old);
		so->searched = true;
	}
	for (;;)
	{
		EhnswCandidate *c;

		if (so->next < list_length(so->results))
			c = list_nth(so->results, so->next++);
		else
		{
			MemoryContext old = MemoryContextSwitchTo(so->state.opcxt);
			bool		more = ehnsw_search_more(so);

			MemoryContextSwitchTo(old);
			if (!more)
				return false;
			continue;
		}

		if (c->element->deleted || c->element->x == NULL || c->element->returned)
			continue;
		c->element->returned = true;

		/*
		 * vecphi.max_scan_rows: the audit counts the rows the scan hands out
		 * and refuses the one over the limit (report.h).
		 */
		report_index_row(&so->returned);
		scan->xs_heaptid = c->element->heaptid;
		scan->xs_recheck = false;
		scan->xs_recheckorderby = false;
		return true;
	}
}

void
ehnswendscan(IndexScanDesc scan)
{
	EhnswScanOpaque so = (EhnswScanOpaque) scan->opaque;

	MemoryContextDelete(so->state.opcxt);
	pfree(so);
	scan->opaque = NULL;
}
