/*-------------------------------------------------------------------------
 *
 * privsql.h
 *	  The one place vecphi runs SQL with privileges other than its
 *	  caller's: as another user, search_path pinned, through SPI.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_PRIVSQL_H
#define VECPHI_PRIVSQL_H

/*
 * The search_path every privileged statement runs under: pg_catalog first,
 * pg_temp last (named, so that it is not searched first for relations and
 * types), nothing a caller can create objects in.
 */
#define PRIVSQL_SEARCH_PATH "pg_catalog, pg_temp"

/* One privileged section: what privsql_begin() changed, to undo it. */
typedef struct PrivSql
{
	Oid			save_userid;
	int			save_sec;
	int			guc_level;		/* 0 once restored */
	bool		pushed_snapshot;
} PrivSql;

extern void privsql_begin(PrivSql *ps, Oid as_user);
extern int	privsql_execute(PrivSql *ps, const char *sql, int nargs,
							Oid *argtypes, Datum *values, bool read_only,
							long count);
extern void privsql_end(PrivSql *ps);
extern void privsql_pin_worker(void);

#endif							/* VECPHI_PRIVSQL_H */
