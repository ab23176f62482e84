/*-------------------------------------------------------------------------
 *
 * auditexec.h
 *	  What the audit's planner part (auditplan.c) and executor part
 *	  (auditexec.c) share: the kinds of vecphi functions, a captured scan,
 *	  an audited execution, the receiver that holds rows back.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_AUDITEXEC_H
#define VECPHI_AUDITEXEC_H

#include "executor/execdesc.h"
#include "fmgr.h"
#include "nodes/execnodes.h"
#include "tcop/dest.h"

#include "auditint.h"

#define IDENTITY_RESNAME		"vecphi_row_identity"
#define AUDIT_IDS_PER_RECORD	1000
#define AUDIT_BUFFER_BYTES		(4 * 1024 * 1024)

typedef enum FuncKind
{
	FK_NONE = 1,
	FK_DISTANCE,
	FK_DECRYPT,
	FK_PROTECTED_INPUT,			/* input function of evector or etext */
	FK_QUERY_CAST				/* array -> evector_query cast */
} FuncKind;

typedef struct FuncKindEntry
{
	Oid			oid;			/* hash key: function or type */
	int			kind;
} FuncKindEntry;

/* What a walk over a statement's expressions found. */
typedef struct CallSearch
{
	bool		distance;
	bool		decrypt;
	Expr	   *query_arg;		/* constant/parameter side of a distance, or
								 * the cast of one to evector_query */
} CallSearch;

struct AuditQuery;

/* One audited scan of one execution. */
typedef struct AuditCapture
{
	PlanState  *node;			/* where rows are read */
	ExecProcNodeMtd orig;		/* its real ExecProcNode */
	struct AuditQuery *query;
	bool		from_output;	/* identity column in the node's output */
	AttrNumber	identity_attno; /* ... at this position */
	FmgrInfo	identity_out;
	int			npk;			/* else: primary key columns of the scan */
	AttrNumber	pk_attnos[INDEX_MAX_KEYS];
	FmgrInfo	pk_out[INDEX_MAX_KEYS];
	const char *action;
	Oid			relid;
	Oid			indexid;
	int64		total;			/* rows captured in this execution */
	bool		ran;			/* the node has been executed */
	bool		emitted;		/* at least one record queued */
	StringInfoData ids;			/* text[] literal body being built */
	int64		nids;
} AuditCapture;

typedef struct AuditQuery
{
	QueryDesc  *qd;
	MemoryContext cxt;
	bool		tracking_only;	/* started without claims: nothing captured */
	int			running;		/* nesting of ExecutorRun calls under way */
	bool		distance_seen;	/* a distance was computed while it ran */
	List	   *captures;
	Expr	   *query_arg;
	bool		digest_done;
	bool		has_digest;
	uint8		digest[AUDIT_DIGEST_LEN];
	MemoryContextCallback on_reset;
} AuditQuery;

/* A DestReceiver that holds rows back until their records are durable. */
typedef struct AuditDest
{
	DestReceiver pub;
	DestReceiver *real;
	MemoryContext cxt;
	List	   *rows;			/* MinimalTuples */
	Size		bytes;
	TupleTableSlot *replay;
} AuditDest;

/* auditplan.c, for auditexec.c (which sits above it) */
extern planner_hook_type audit_prev_planner;
extern void audit_kind_cache_invalidate(Datum arg, int cacheid, uint32 hashvalue);
extern bool audit_relation_is_protected(Oid relid);
extern void audit_stmt_search_calls(PlannedStmt * stmt, CallSearch *cs);
extern int	audit_primary_key_columns(Relation rel, AttrNumber * attnos);
extern PlannedStmt * audit_planner(Query * parse, const char *query_string, int cursorOptions, ParamListInfo boundParams);

#endif							/* VECPHI_AUDITEXEC_H */
