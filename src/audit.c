/*-------------------------------------------------------------------------
 *
 * audit.c
 *	  Audit events (placeholder: logs them until the audit writer lands).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "audit.h"

void
audit_emit(const AuditEvent *event, bool wait_durable)
{
	(void) wait_durable;
	elog(LOG, "vecphi audit: %s %s rows " INT64_FORMAT " %s",
		 event->action, event->outcome, event->rows,
		 event->detail ? event->detail : "");
}
