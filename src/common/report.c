/*-------------------------------------------------------------------------
 *
 * report.c
 *	  The sink lower layers report denials, decryptions, distances, key
 *	  events and the rows of index scans to; the audit module registers it
 *	  (see report.h).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "report.h"

static ReportSink report_sink;

/* Install the receivers (the audit module's audit_init()). */
void
report_set_sink(const ReportSink *sink)
{
	report_sink = *sink;
}

/* A denial about to be raised from file; see vecphi_deny(). */
void
report_denial_at(const char *message, const char *detail, const char *file)
{
	if (report_sink.denial)
		report_sink.denial(message, detail, file);
}

/* A value decrypted for the caller. */
void
report_decrypt(bool is_text)
{
	if (report_sink.decrypt)
		report_sink.decrypt(is_text);
}

/* A distance computed between encrypted vectors. */
void
report_distance(void)
{
	if (report_sink.distance)
		report_sink.distance();
}

/* A key event (keys layer: create, rotate, shred, fork, adopt). */
void
report_key_event(ReportKeyEvent event, int64 rows, const char *detail,
				 bool wait_durable)
{
	if (report_sink.key_event)
		report_sink.key_event(event, rows, detail, wait_durable);
}

/* An ehnsw scan hands a row to the executor; may raise a denial. */
void
report_index_row(int64 *returned)
{
	if (report_sink.index_row)
		report_sink.index_row(returned);
}
