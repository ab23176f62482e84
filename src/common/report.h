/*-------------------------------------------------------------------------
 *
 * report.h
 *	  What a lower layer reports upward without calling the layer above:
 *	  a denial it is about to raise, a decryption, a distance computed, a
 *	  key event, a row an index scan hands to the executor.
 *
 * The audit module (src/audit/) registers the sink at start-up; the keys,
 * types, claims, index and protection code call report_*() here, so no
 * layer below the audit includes or calls it.  Without a sink (never, once
 * vecphi is loaded through shared_preload_libraries) the reports are
 * dropped.
 *
 * vecphi_deny() is the one form of "record a denial, then raise it": the
 * record is queued before the error (so a PL/pgSQL EXCEPTION block that
 * catches the error does not hide it), and both carry the caller's source
 * file, which the audit's log hook uses to tell vecphi's own denials from
 * errors anyone can raise with any text.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_REPORT_H
#define VECPHI_REPORT_H

/* Key events of the keys layer (the audit's key_* actions). */
typedef enum ReportKeyEvent
{
	REPORT_KEY_CREATE,			/* tenant created, keyring forked, adopted */
	REPORT_KEY_ROTATE_KEK,
	REPORT_KEY_ROTATE_DEK,
	REPORT_KEY_SHRED
} ReportKeyEvent;

/* The audit module's receivers; each may be NULL. */
typedef struct ReportSink
{
	/* A denial about to be raised from source file file (its __FILE__). */
	void		(*denial) (const char *message, const char *detail,
						   const char *file);
	/* One value decrypted for the caller (an etext when is_text). */
	void		(*decrypt) (bool is_text);
	/* One distance computed between encrypted vectors. */
	void		(*distance) (void);

	/*
	 * A key event that succeeded: rows (or -1) and detail for the record;
	 * with wait_durable, return only once it is committed (or raise).
	 */
	void		(*key_event) (ReportKeyEvent event, int64 rows,
							  const char *detail, bool wait_durable);

	/*
	 * An ehnsw scan is about to hand a row to the executor.  *returned is the
	 * scan's count of rows handed out so far, which the receiver advances and
	 * may refuse the row for (vecphi.max_scan_rows: a denial, raised from the
	 * receiver).
	 */
	void		(*index_row) (int64 *returned);
} ReportSink;

extern void report_set_sink(const ReportSink *sink);
extern void report_denial_at(const char *message, const char *detail,
							 const char *file);
extern void report_decrypt(bool is_text);
extern void report_distance(void);
extern void report_key_event(ReportKeyEvent event, int64 rows,
							 const char *detail, bool wait_durable);
extern void report_index_row(int64 *returned);

/* Record a denial vecphi raises right after, from the same source file. */
#define report_denial(message, detail) \
	report_denial_at((message), (detail), __FILE__)

/*
 * Record a denial and raise it: sqlerrcode and message as for ereport(),
 * audit_detail (or NULL) for the audit record, then any errdetail() and
 * errhint() for the client.  A macro, not a function, so that the error
 * and the record name the caller's file (see above).  Never returns.
 */
#define vecphi_deny(sqlerrcode, message, audit_detail, ...) \
	do { \
		const char *vecphi_deny_message_ = (message); \
		\
		report_denial(vecphi_deny_message_, (audit_detail)); \
		ereport(ERROR, \
				(errcode(sqlerrcode), \
				 errmsg("%s", vecphi_deny_message_), ##__VA_ARGS__)); \
		pg_unreachable(); \
	} while (0)

#endif							/* VECPHI_REPORT_H */
