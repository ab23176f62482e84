/*-------------------------------------------------------------------------
 *
 * ehnswscan.c
 *	  Scanning an ehnsw index: ORDER BY col <op> query LIMIT k.
 *
 * The query vector must be encrypted under the claimant's tenant (the
 * claims are checked before anything is decrypted), and the scan walks
 * that tenant's graph only: it never loads, decrypts or returns an element
 * of another tenant, whatever row-level security says.
 *
 * The scan returns up to vecphi.ef_search rows, nearest first.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relscan.h"
#include "utils/memutils.h"

#include "ehnsw.h"

typedef struct EhnswScanOpaqueData
{
	EhnswState	state;
	bool		searched;
	List	   *results;		/* candidates, nearest first */
	int			next;
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
	so->results = NIL;
	so->next = 0;
}

/* Run the HNSW search for the query; results go to so->results. */
static void
ehnsw_search(IndexScanDesc scan)
{
	EhnswScanOpaque so = (EhnswScanOpaque) scan->opaque;
	EhnswState *state = &so->state;
	struct varlena *env;
	EnvelopeHeader hdr;
	float4	   *q;
	uint32		tenant_id;
	EhnswMetaPageData meta;
	EhnswEntryPoint entry;
	bool		found;
	ItemPointerData etid;
	EhnswElement *epel;
	List	   *ep;
	int			l;

	if (scan->numberOfOrderBys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot scan an ehnsw index without ORDER BY")));
	if (scan->orderByData[0].sk_flags & SK_ISNULL)
		return;

	env = (struct varlena *) PG_DETOAST_DATUM(scan->orderByData[0].sk_argument);
	envelope_read_header(env, ENVELOPE_KIND_VECTOR, &hdr);
	envelope_check_claimant(&hdr, ENVELOPE_KIND_VECTOR);
	q = ehnsw_decrypt_vector(state, env, &tenant_id);
	if (!ehnsw_indexable(state, q))
		return;

	ehnsw_read_meta(scan->indexRelation, &meta, &entry, tenant_id, &found);
	if (!found)
		return;
	ItemPointerSet(&etid, entry.blkno, entry.offno);
	epel = ehnsw_load_element(state, &etid, true);
	if (epel->tenant_id != tenant_id)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has an invalid entry point for a tenant",
						RelationGetRelationName(scan->indexRelation)),
				 errhint("Please REINDEX it.")));
	ep = list_make1(ehnsw_make_candidate(state, epel, q));
	for (l = entry.level; l > 0; l--)
		ep = ehnsw_search_layer(state, q, ep, 1, l, tenant_id);
	so->results = ehnsw_search_layer(state, q, ep, ehnsw_ef_search, 0, tenant_id);
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
	while (so->next < list_length(so->results))
	{
		EhnswCandidate *c = list_nth(so->results, so->next++);

		if (c->element->deleted || c->element->x == NULL)
			continue;
		scan->xs_heaptid = c->element->heaptid;
		scan->xs_recheck = false;
		scan->xs_recheckorderby = false;
		return true;
	}
	return false;
}

void
ehnswendscan(IndexScanDesc scan)
{
	EhnswScanOpaque so = (EhnswScanOpaque) scan->opaque;

	MemoryContextDelete(so->state.opcxt);
	pfree(so);
	scan->opaque = NULL;
}
