/*-------------------------------------------------------------------------
 *
 * scrub.c
 *	  Secure erasure of deleted rows: zeroing the bytes PostgreSQL leaves
 *	  behind in heap and TOAST pages, after every VACUUM of a protected
 *	  table and on demand (vecphi.scrub), and the audit record that
 *	  certifies each erasure.
 *
 * What is left behind.  Pruning (by VACUUM or on access) removes a dead
 * tuple by compacting the live ones to the end of the page
 * (PageRepairFragmentation): the dead tuple's bytes stay in the free space
 * between pd_lower and pd_upper, the "hole", until a later insert happens
 * to overwrite them.  TOAST pages, which hold the ciphertext of evector and
 * etext values (both are STORAGE external), behave the same.  Line-pointer
 * truncation (PageTruncateLinePointerArray) only gives line pointers back to
 * the hole; they hold offsets, never data.  ehnsw pages are erased by the
 * index's own VACUUM (ehnswvacuum.c).
 *
 * Scrubbing a page.  Under an exclusive buffer lock, and only when some
 * byte of the hole (or of the alignment padding after an item) is not
 * zero, the page is zeroed there and WAL-logged with Generic WAL, whose
 * replay zeroes the hole of the page it changes: standbys are scrubbed too.
 * The record is tiny (the hole is not part of its delta, only padding is),
 * unless it is the page's first change since a checkpoint, when it carries
 * a full image without the hole; a full image of every page
 * (log_newpage_buffer) doubled VACUUM's WAL and time.  Nothing a reader can
 * reach changes, so the exclusive lock is enough.  Pages whose free space
 * is already zero cost one read of it and no WAL.  Before that,
 * a page with prunable rows (pd_prune_xid set and old enough for every
 * snapshot) is pruned when no other backend has it pinned, as on-access
 * pruning would; a page we cannot prune is counted as busy and the
 * erasure reported incomplete.
 *
 * When.  A ProcessUtility hook scrubs, after the standard VACUUM, every
 * table the command vacuumed that has evector or etext columns (and its
 * TOAST table).  Autovacuum does not pass through ProcessUtility; for it,
 * an ehnsw index's amvacuumcleanup, which runs in every VACUUM after the
 * heap passes, scrubs its table and that table's TOAST table.  So
 * autovacuum covers every table with an ehnsw index; docs/erasure.md has
 * the details.  vecphi.scrub_on_vacuum (superuser, default on) turns both
 * off, for measurements.
 *
 * vecphi.scrub(tbl) does the same on demand without a VACUUM: it prunes,
 * zeroes, and removes from every ehnsw index of the table the elements of
 * rows whose line pointers pruning left dead, so a DELETE followed by
 * vecphi.scrub() erases the ciphertext from heap, TOAST and index.  (The
 * dead line pointers stay for the next VACUUM, which other indexes need.)
 *
 * The erasure record.  vecphi.track_erasure() gives a table a statement
 * trigger that notes, for every deleted row, a salted SHA-256 of its
 * subject column in vecphi.pending_erasure (never the subject itself).  A
 * scrub that completes consumes the notes of its table and writes one
 * audit record: relation, number of deletions, and a SHA-256 over the
 * sorted distinct subject digests, which an auditor holding the list of
 * subjects can recompute with vecphi.erasure_digest().  An incomplete scrub
 * leaves the notes for the next one, and so does every scrub for notes
 * made after it began (their pages may be behind it; see
 * pending_watermark).  Autovacuum cannot run SQL, so its
 * records carry pages and bytes only; the next VACUUM or vecphi.scrub()
 * certifies the subjects.  The notes are read and consumed as the owner of
 * vecphi.pending_erasure, through privsql.c: the caller's search_path and
 * whatever it planted in pg_temp or its schemas play no part.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/generic_xlog.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/vacuum.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/autovacuum.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "audit.h"
#include "ciphertypes.h"
#include "compat.h"
#include "ehnsw.h"
#include "hooks.h"
#include "privsql.h"
#include "scrub.h"

bool		vecphi_scrub_on_vacuum = true;

/* What one scrub did, over all the relations of a table. */
typedef struct ScrubStats
{
	int64		pages;			/* pages examined */
	int64		pages_scrubbed; /* pages whose free space held old bytes */
	int64		bytes;			/* bytes zeroed */
	int64		pages_busy;		/* prunable, but pinned by another backend */
	int64		pages_held;		/* rows deleted too recently to remove */
	int64		elements;		/* ehnsw elements removed (vecphi.scrub) */
} ScrubStats;

/* Heap TIDs whose line pointers are dead, in physical order. */
typedef struct DeadTids
{
	ItemPointerData *tids;
	int64		n;
	int64		max;
} DeadTids;

static int	utility_slot;		/* of scrub_ProcessUtility (hooks.h) */

/* Autovacuum: the table last scrubbed, so a second ehnsw index skips it. */
static Oid	autovacuum_last_relid = InvalidOid;
static LocalTransactionId autovacuum_last_lxid = InvalidLocalTransactionId;


/* ---------- pages ---------- */

/*
 * Does [p, p + len) hold a byte that is not zero?  With zero, clear it.
 * Returns the bytes cleared (or to clear).
 */
static Size
zero_range(char *p, Size len, bool zero)
{
	/* memcmp against zeros is vectorised by the C library; a loop is not. */
	static const char zeros[BLCKSZ];

	Assert(len <= BLCKSZ);
	if (len == 0 || memcmp(p, zeros, len) == 0)
		return 0;
	if (zero)
		memset(p, 0, len);
	return len;
}

/*
 * Bytes of a standard page that no item owns yet hold something: the hole
 * between pd_lower and pd_upper and the alignment padding after each item.
 * With zero, clear them.  A page whose header does not make sense is left
 * alone (0): the buffer manager has already checked what it read.
 */
static Size
page_stale_bytes(Page page, bool zero)
{
	PageHeader	phdr = (PageHeader) page;
	OffsetNumber off;
	OffsetNumber maxoff;
	Size		total;

	if (PageIsNew(page) ||
		phdr->pd_lower < SizeOfPageHeaderData ||
		phdr->pd_lower > phdr->pd_upper ||
		phdr->pd_upper > phdr->pd_special ||
		phdr->pd_special > BLCKSZ)
		return 0;
	total = zero_range((char *) page + phdr->pd_lower,
					   phdr->pd_upper - phdr->pd_lower, zero);
	maxoff = PageGetMaxOffsetNumber(page);
	for (off = FirstOffsetNumber; off <= maxoff; off++)
	{
		ItemId		lp = PageGetItemId(page, off);
		Size		start;
		Size		end;

		if (!ItemIdHasStorage(lp))
			continue;
		start = ItemIdGetOffset(lp) + ItemIdGetLength(lp);
		end = ItemIdGetOffset(lp) + MAXALIGN(ItemIdGetLength(lp));
		if (ItemIdGetOffset(lp) < phdr->pd_upper || end > phdr->pd_special)
			continue;
		total += zero_range((char *) page + start, end - start, zero);
	}
	return total;
}

/*
 * Scrub one heap (or TOAST) page the caller has pinned: prune it if it can,
 * then zero its free space, WAL-logged.  Collects the page's dead line
 * pointers into dead when asked.
 */
static void
scrub_heap_page(Relation rel, Buffer buf, GlobalVisState * vistest,
				ScrubStats *st, DeadTids *dead)
{
	Page		page = BufferGetPage(buf);
	bool		cleanup_lock;
	TransactionId prune_xid;
	Size		stale;

	cleanup_lock = ConditionalLockBufferForCleanup(buf);
	if (!cleanup_lock)
		LockBuffer(buf, BUFFER_LOCK_EXCLUSIVE);
	st->pages++;
	if (PageIsNew(page))
	{
		LockBuffer(buf, BUFFER_LOCK_UNLOCK);
		return;
	}

	prune_xid = ((PageHeader) page)->pd_prune_xid;
	if (TransactionIdIsValid(prune_xid))
	{
		if (!GlobalVisTestIsRemovableXid(vistest, prune_xid))
			st->pages_held++;
		else if (!cleanup_lock)
			st->pages_busy++;
		else
		{
			int			nnewlpdead;

			(void) vecphi_heap_page_prune(rel, buf, vistest, &nnewlpdead);
			if (TransactionIdIsValid(((PageHeader) page)->pd_prune_xid))
				st->pages_held++;
		}
	}

	stale = page_stale_bytes(page, false);
	if (stale > 0)
	{
		GenericXLogState *xlog = GenericXLogStart(rel);
		Page		work = GenericXLogRegisterBuffer(xlog, buf, 0);

		/*
		 * Zero the working copy ourselves: GenericXLogFinish zeroes the hole
		 * only of a WAL-logged relation's page.
		 */
		(void) page_stale_bytes(work, true);
		GenericXLogFinish(xlog);
		st->pages_scrubbed++;
		st->bytes += stale;
	}

	if (dead != NULL)
	{
		OffsetNumber off;
		OffsetNumber maxoff = PageGetMaxOffsetNumber(page);

		for (off = FirstOffsetNumber; off <= maxoff; off++)
		{
			if (!ItemIdIsDead(PageGetItemId(page, off)))
				continue;
			if (dead->n == dead->max)
			{
				dead->max = Max(dead->max * 2, 1024);
				dead->tids = dead->tids == NULL ?
					palloc(dead->max * sizeof(ItemPointerData)) :
					repalloc_huge(dead->tids, dead->max * sizeof(ItemPointerData));
			}
			/* (ItemPointerSet evaluates its first argument more than once.) */
			ItemPointerSet(&dead->tids[dead->n], BufferGetBlockNumber(buf), off);
			dead->n++;
		}
	}
	LockBuffer(buf, BUFFER_LOCK_UNLOCK);
}

/* Scrub every page of a heap or TOAST relation. */
static void
scrub_heap_relation(Relation rel, BufferAccessStrategy strategy,
					ScrubStats *st, DeadTids *dead)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(rel);
	GlobalVisState *vistest = GlobalVisTestFor(rel);
	BlockNumber blkno;

	for (blkno = 0; blkno < nblocks; blkno++)
	{
		Buffer		buf;

		vacuum_delay_point();
		buf = ReadBufferExtended(rel, MAIN_FORKNUM, blkno, RBM_NORMAL, strategy);
		scrub_heap_page(rel, buf, vistest, st, dead);
		ReleaseBuffer(buf);
	}
}


/* ---------- ehnsw elements of dead rows (vecphi.scrub) ---------- */

static int
tid_cmp(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) a, (ItemPointer) b);
}

/* Bulk-delete callback: is the heap row behind this TID dead? */
static bool
dead_tid_callback(ItemPointer tid, void *arg)
{
	DeadTids   *dead = (DeadTids *) arg;

	return bsearch(tid, dead->tids, dead->n, sizeof(ItemPointerData),
				   tid_cmp) != NULL;
}

/*
 * Remove from every ehnsw index of the table the elements of the rows in
 * dead, with the index's own bulk delete, which zeroes their ciphertext.
 */
static void
scrub_remove_index_elements(Relation rel, DeadTids *dead,
							BufferAccessStrategy strategy, ScrubStats *st)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		IndexVacuumInfo info;
		IndexBulkDeleteResult *stats;

		if (index->rd_indam->ambulkdelete != ehnswbulkdelete)
		{
			index_close(index, RowExclusiveLock);
			continue;
		}
		memset(&info, 0, sizeof(info));
		info.index = index;
		info.analyze_only = false;
		info.report_progress = false;
		info.estimated_count = true;
		info.message_level = DEBUG2;
		info.num_heap_tuples = rel->rd_rel->reltuples;
		info.strategy = strategy;
		stats = index_bulk_delete(&info, NULL, dead_tid_callback, dead);
		if (stats != NULL)
			st->elements += (int64) stats->tuples_removed;
		index_close(index, RowExclusiveLock);
	}
	list_free(indexes);
}

/*
 * Scrub a table's heap and TOAST pages; with remove_elements, also take the
 * elements of dead rows out of its ehnsw indexes.  The caller holds a lock
 * on the table that keeps VACUUM away (or is VACUUM).
 */
static void
scrub_table(Relation rel, bool remove_elements, BufferAccessStrategy strategy,
			ScrubStats *st)
{
	DeadTids	dead;
	Oid			toastid = rel->rd_rel->reltoastrelid;

	memset(&dead, 0, sizeof(dead));
	scrub_heap_relation(rel, strategy, st, remove_elements ? &dead : NULL);

	/*
	 * Pruning the TOAST table needs no more than on-access pruning does: a
	 * lock that keeps it from being dropped.
	 */
	if (OidIsValid(toastid))
	{
		Relation	toast = table_open(toastid, AccessShareLock);

		scrub_heap_relation(toast, strategy, st, NULL);
		table_close(toast, AccessShareLock);
	}
	if (remove_elements && dead.n > 0)
		scrub_remove_index_elements(rel, &dead, strategy, st);
}


/* ---------- which tables ---------- */

/*
 * Does the table hold encrypted values: any column of type evector or
 * etext?  Those are the tables VACUUM scrubs.
 */
static bool
table_is_protected(Relation rel, Oid nsp)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			evector_oid;
	Oid			etext_oid;
	int			i;

	vecphi_ciphertext_types_in(nsp, &evector_oid, &etext_oid);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped &&
			ciphertext_type_holds(att->atttypid, evector_oid, etext_oid))
			return true;
	}
	return false;
}

/* The plain tables behind relid: itself, or a partitioned table's leaves. */
static List *
leaf_tables(Oid relid)
{
	List	   *result = NIL;
	ListCell   *lc;
	char		relkind = get_rel_relkind(relid);

	if (relkind == RELKIND_RELATION || relkind == RELKIND_MATVIEW)
		return list_make1_oid(relid);
	if (relkind != RELKIND_PARTITIONED_TABLE)
		return NIL;
	foreach(lc, find_all_inheritors(relid, NoLock, NULL))
	{
		relkind = get_rel_relkind(lfirst_oid(lc));
		if (relkind == RELKIND_RELATION || relkind == RELKIND_MATVIEW)
			result = lappend_oid(result, lfirst_oid(lc));
	}
	return result;
}


/* ---------- the erasure record ---------- */

/* Owner of a relation. */
static Oid
relation_owner(Oid relid)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Start a privileged section for vecphi's erasure tables: as their owner
 * (nobody else may read or change them), search_path pinned (privsql.c).
 */
static void
erasure_sql_begin(PrivSql *ps)
{
	Oid			nsp = get_namespace_oid("vecphi", false);
	Oid			pending = get_relname_relid("pending_erasure", nsp);

	if (!OidIsValid(pending))
		elog(ERROR, "vecphi: table vecphi.pending_erasure is missing");
	privsql_begin(ps, relation_owner(pending));
}

/* First column of the first row of the last SPI result as int64, or 0. */
static int64
spi_first_int64(void)
{
	bool		isnull;
	Datum		d;

	if (SPI_processed == 0)
		return 0;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/*
 * The last id vecphi.pending_erasure has handed out.  Taken before a scrub
 * reads any page: a deletion noted later may be on a page the scrub had
 * already passed, so only notes up to it are certified (the rest wait for
 * the next scrub).  A note's id is drawn after its row was deleted.
 */
static int64
pending_watermark(void)
{
	PrivSql		ps;
	int64		result;

	erasure_sql_begin(&ps);
	if (privsql_execute(&ps, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
						"FROM vecphi.pending_erasure_id_seq",
						0, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "vecphi: could not read vecphi.pending_erasure_id_seq");
	result = spi_first_int64();
	privsql_end(&ps);
	return result;
}

/*
 * Consume the pending-erasure notes of a table up to the watermark (when
 * the scrub was complete) and return how many deletions they record and,
 * in *subjects, the digest over their distinct subjects ("sha256:<hex>"),
 * or NULL when none were noted.  Incomplete: count them, consume nothing.
 */
static int64
erasure_consume(Oid relid, bool complete, int64 watermark, char **subjects)
{
	Oid			types[2] = {OIDOID, INT8OID};
	Datum		values[2];
	PrivSql		ps;
	int64		count;
	int			rc;

	*subjects = NULL;
	values[0] = ObjectIdGetDatum(relid);
	values[1] = Int64GetDatum(watermark);
	erasure_sql_begin(&ps);
	rc = privsql_execute(&ps, complete ?
						 "WITH gone AS (DELETE FROM vecphi.pending_erasure "
						 "WHERE relid OPERATOR(pg_catalog.=) $1 "
						 "AND id OPERATOR(pg_catalog.<=) $2 RETURNING subject_digest) "
						 "SELECT pg_catalog.count(*), pg_catalog.encode(pg_catalog.sha256("
						 "pg_catalog.string_agg(DISTINCT subject_digest, ''::pg_catalog.bytea "
						 "ORDER BY subject_digest)), 'hex') FROM gone" :
						 "SELECT pg_catalog.count(*), NULL::pg_catalog.text "
						 "FROM vecphi.pending_erasure "
						 "WHERE relid OPERATOR(pg_catalog.=) $1 AND id OPERATOR(pg_catalog.<=) $2",
						 2, types, values, !complete, 0);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "vecphi: could not read vecphi.pending_erasure: %s",
			 SPI_result_code_string(rc));
	count = spi_first_int64();
	{
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		if (!isnull)
			*subjects = MemoryContextStrdup(CurTransactionContext,
											psprintf("sha256:%s", TextDatumGetCString(d)));
	}
	privsql_end(&ps);
	return count;
}

/* Write the audit record of one table's erasure. */
static void
erasure_record(Oid relid, const char *how, const ScrubStats *st,
			   int64 rows, const char *subjects, int64 pending,
			   bool wait_durable)
{
	AuditEvent	ev;
	StringInfoData detail;
	bool		complete = st->pages_busy == 0 && st->pages_held == 0;

	initStringInfo(&detail);
	appendStringInfo(&detail,
					 "%s: " INT64_FORMAT " pages, " INT64_FORMAT " scrubbed, "
					 INT64_FORMAT " bytes zeroed",
					 how, st->pages, st->pages_scrubbed, st->bytes);
	if (st->elements > 0)
		appendStringInfo(&detail, "; " INT64_FORMAT " index elements removed",
						 st->elements);
	if (subjects != NULL)
		appendStringInfo(&detail, "; subjects %s", subjects);
	if (!complete)
		appendStringInfo(&detail,
						 "; incomplete: " INT64_FORMAT " pages pinned, " INT64_FORMAT
						 " pages hold rows older snapshots may see; " INT64_FORMAT
						 " deletions left pending",
						 st->pages_busy, st->pages_held, pending);

	memset(&ev, 0, sizeof(ev));
	ev.action = AUDIT_ACTION_ERASURE;
	ev.outcome = AUDIT_OUTCOME_OK;
	ev.relid = relid;
	ev.indexid = InvalidOid;
	ev.rows = rows;
	ev.detail = detail.data;
	audit_emit(&ev, wait_durable);
	pfree(detail.data);
}

/* Add one table's scrub to a total. */
static void
scrub_stats_add(ScrubStats *total, const ScrubStats *st)
{
	total->pages += st->pages;
	total->pages_scrubbed += st->pages_scrubbed;
	total->bytes += st->bytes;
	total->pages_busy += st->pages_busy;
	total->pages_held += st->pages_held;
	total->elements += st->elements;
}

/* Scrub one table for a VACUUM command or vecphi.scrub(), and record it. */
static void
scrub_and_record(Relation rel, bool remove_elements, const char *how,
				 BufferAccessStrategy strategy, ScrubStats *st,
				 int64 watermark)
{
	int64		rows;
	char	   *subjects;
	bool		complete;

	scrub_table(rel, remove_elements, strategy, st);
	complete = st->pages_busy == 0 && st->pages_held == 0;
	rows = erasure_consume(RelationGetRelid(rel), complete, watermark, &subjects);
	erasure_record(RelationGetRelid(rel), how, st, complete ? rows : 0,
				   subjects, complete ? 0 : rows, true);
}


/* ---------- after VACUUM ---------- */

/*
 * Would VACUUM of the whole database process this table for the current
 * user?  PostgreSQL 15's rule (vacuum_is_relation_owner()), without its
 * warnings: that function requires VACOPT_VACUUM or VACOPT_ANALYZE in its
 * options, and with VACOPT_VACUUM it warns about every table it skips,
 * which VACUUM itself has just done.
 */
static bool
may_vacuum(Form_pg_class form)
{
	return pg_class_ownercheck(form->oid, GetUserId()) ||
		(pg_database_ownercheck(MyDatabaseId, GetUserId()) && !form->relisshared);
}

/*
 * The plain tables a VACUUM command processed; the partitioned tables it
 * named go to *parents (their deletions are noted under their own OID).
 */
static List *
vacuumed_tables(VacuumStmt * stmt, List **parents)
{
	List	   *relids = NIL;
	ListCell   *lc;

	if (stmt->rels == NIL)
	{
		/* The whole database: every table the user may vacuum. */
		Relation	pgclass = table_open(RelationRelationId, AccessShareLock);
		TableScanDesc scan = table_beginscan_catalog(pgclass, 0, NULL);
		HeapTuple	tuple;

		while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
		{
			Form_pg_class form = (Form_pg_class) GETSTRUCT(tuple);

			if ((form->relkind == RELKIND_RELATION || form->relkind == RELKIND_MATVIEW) &&
				form->relpersistence != RELPERSISTENCE_TEMP &&
				may_vacuum(form))
				relids = lappend_oid(relids, form->oid);
		}
		table_endscan(scan);
		table_close(pgclass, AccessShareLock);
		return relids;
	}
	foreach(lc, stmt->rels)
	{
		VacuumRelation *vrel = lfirst_node(VacuumRelation, lc);
		Oid			relid = vrel->oid;

		if (!OidIsValid(relid) && vrel->relation != NULL)
			relid = RangeVarGetRelid(vrel->relation, NoLock, true);
		if (!OidIsValid(relid))
			continue;
		relids = list_concat(relids, leaf_tables(relid));
		if (get_rel_relkind(relid) == RELKIND_PARTITIONED_TABLE &&
			(pg_class_ownercheck(relid, GetUserId()) ||
			 pg_database_ownercheck(MyDatabaseId, GetUserId())))
			*parents = lappend_oid(*parents, relid);
	}
	return relids;
}

/* Scrub what a VACUUM command left of deleted rows. */
static void
scrub_after_vacuum(VacuumStmt * stmt)
{
	Oid			nsp;
	List	   *relids;
	List	   *parents = NIL;
	ListCell   *lc;
	BufferAccessStrategy strategy;
	ScrubStats	total;
	int64		watermark;

	if (!IsTransactionState())
		return;
	nsp = vecphi_extension_namespace(true);
	if (!OidIsValid(nsp))
		return;
	relids = vacuumed_tables(stmt, &parents);
	if (relids == NIL)
		return;
	watermark = pending_watermark();
	strategy = GetAccessStrategy(BAS_VACUUM);
	memset(&total, 0, sizeof(total));
	foreach(lc, relids)
	{
		Oid			relid = lfirst_oid(lc);
		Relation	rel;
		ScrubStats	st;

		CHECK_FOR_INTERRUPTS();
		rel = try_table_open(relid, ShareUpdateExclusiveLock);
		if (rel == NULL)
			continue;
		if (!pg_class_ownercheck(relid, GetUserId()) &&
			!pg_database_ownercheck(MyDatabaseId, GetUserId()))
		{
			table_close(rel, ShareUpdateExclusiveLock);
			continue;
		}
		if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP &&
			!RELATION_IS_LOCAL(rel))
		{
			table_close(rel, ShareUpdateExclusiveLock);
			continue;
		}
		if (table_is_protected(rel, nsp))
		{
			memset(&st, 0, sizeof(st));
			scrub_and_record(rel, false, "vacuum", strategy, &st, watermark);
			scrub_stats_add(&total, &st);
			ereport(DEBUG1,
					(errmsg_internal("vecphi: scrubbed \"%s\": " INT64_FORMAT " pages, " INT64_FORMAT " bytes",
									 RelationGetRelationName(rel), st.pages_scrubbed, st.bytes)));
		}
		table_close(rel, ShareUpdateExclusiveLock);
	}
	FreeAccessStrategy(strategy);

	/*
	 * Deletions noted against a partitioned table the command named: its
	 * record counts every partition this command scrubbed.
	 */
	foreach(lc, parents)
	{
		Oid			relid = lfirst_oid(lc);
		bool		complete = total.pages_busy == 0 && total.pages_held == 0;
		char	   *subjects;
		int64		rows = erasure_consume(relid, complete, watermark, &subjects);

		erasure_record(relid, "vacuum", &total, complete ? rows : 0, subjects,
					   complete ? 0 : rows, true);
	}
}

/* ProcessUtility hook: scrub after the standard VACUUM has run. */
static void
scrub_ProcessUtility(PlannedStmt * pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment * queryEnv,
					 DestReceiver *dest, QueryCompletion * qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	VacuumStmt *vacuum = NULL;

	if (IsA(parsetree, VacuumStmt) && ((VacuumStmt *) parsetree)->is_vacuumcmd)
		vacuum = (VacuumStmt *) copyObject(parsetree);

	utility_next(utility_slot, pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);

	if (vacuum != NULL && vecphi_scrub_on_vacuum && !RecoveryInProgress())
		scrub_after_vacuum(vacuum);
}

/*
 * Called by ehnswvacuumcleanup (the hook scrub_init() registers with
 * ehnsw_set_vacuum_cleanup_hook()): under autovacuum, which bypasses the
 * ProcessUtility hook, scrub the index's table and its TOAST table once
 * per vacuum of that table.
 */
static void
scrub_after_index_cleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	Oid			relid = info->index->rd_index->indrelid;
	Relation	rel;
	ScrubStats	st;

	if (!vecphi_scrub_on_vacuum || info->analyze_only ||
		!IsAutoVacuumWorkerProcess())
		return;
	if (relid == autovacuum_last_relid && MyProc->lxid == autovacuum_last_lxid)
		return;
	autovacuum_last_relid = relid;
	autovacuum_last_lxid = MyProc->lxid;

	/* VACUUM holds ShareUpdateExclusiveLock on the table. */
	rel = table_open(relid, NoLock);
	memset(&st, 0, sizeof(st));
	scrub_table(rel, false, info->strategy, &st);
	if (st.bytes > 0 || (stats != NULL && stats->tuples_removed > 0))
		erasure_record(relid, "autovacuum", &st,
					   stats != NULL ? (int64) stats->tuples_removed : 0,
					   NULL, 0, false);
	table_close(rel, NoLock);
}


/* ---------- SQL ---------- */

PG_FUNCTION_INFO_V1(vecphi_scrub);
Datum
vecphi_scrub(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	TupleDesc	desc;
	Datum		values[6];
	bool		nulls[6];
	ScrubStats	total;
	List	   *leaves;
	ListCell   *lc;
	Oid			nsp;
	BufferAccessStrategy strategy;
	int64		watermark;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	PreventCommandDuringRecovery("vecphi.scrub()");
	if (get_rel_name(relid) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
	leaves = leaf_tables(relid);
	if (leaves == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid)),
				 errdetail("vecphi.scrub() erases deleted rows of tables, materialized views and partitioned tables.")));

	nsp = vecphi_extension_namespace(true);
	watermark = pending_watermark();
	strategy = GetAccessStrategy(BAS_VACUUM);
	memset(&total, 0, sizeof(total));
	foreach(lc, leaves)
	{
		Relation	rel = table_open(lfirst_oid(lc), ShareUpdateExclusiveLock);
		ScrubStats	st;

		if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP &&
			!RELATION_IS_LOCAL(rel))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot scrub temporary tables of other sessions")));
		memset(&st, 0, sizeof(st));
		if (OidIsValid(nsp) && table_is_protected(rel, nsp))
			scrub_and_record(rel, true, "scrub", strategy, &st, watermark);
		else
			scrub_table(rel, true, strategy, &st);
		scrub_stats_add(&total, &st);
		table_close(rel, NoLock);
	}
	FreeAccessStrategy(strategy);

	/* Deletions noted against a partitioned parent are certified here. */
	if (list_length(leaves) > 1 || linitial_oid(leaves) != relid)
	{
		bool		complete = total.pages_busy == 0 && total.pages_held == 0;
		char	   *subjects;
		int64		rows = erasure_consume(relid, complete, watermark, &subjects);

		erasure_record(relid, "scrub", &total, complete ? rows : 0, subjects,
					   complete ? 0 : rows, true);
	}

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int64GetDatum(total.pages);
	values[1] = Int64GetDatum(total.pages_scrubbed);
	values[2] = Int64GetDatum(total.bytes);
	values[3] = Int64GetDatum(total.elements);
	values[4] = Int64GetDatum(total.pages_busy + total.pages_held);
	values[5] = BoolGetDatum(total.pages_busy == 0 && total.pages_held == 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* Register vecphi.scrub_on_vacuum and the hook; called once from _PG_init. */
void
scrub_init(void)
{
	DefineCustomBoolVariable("vecphi.scrub_on_vacuum",
							 "Zero what deleted rows leave in heap and TOAST pages after VACUUM.",
							 "Turning it off leaves deleted ciphertext in page free space; for measurements only.",
							 &vecphi_scrub_on_vacuum,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
	utility_slot = utility_register(scrub_ProcessUtility);
	ehnsw_set_vacuum_cleanup_hook(scrub_after_index_cleanup);
}
