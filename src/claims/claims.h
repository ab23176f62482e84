/*-------------------------------------------------------------------------
 *
 * claims.h
 *	  Verified claims of the current transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_CLAIMS_H
#define VECPHI_CLAIMS_H

typedef struct VecphiClaims
{
	char	   *tenant;
	char	   *role;
	char	   *subject;
	char	   *purpose;		/* NULL when absent */
	char	   *break_glass;	/* reason, NULL when absent */
	int64		expires;		/* Unix seconds, 0 when the token has none */
	char	   *token;			/* the verified token, for parallel workers */
	uint32		tenant_id;		/* resolved lazily, 0 until then */
} VecphiClaims;

extern const VecphiClaims *claims_current(void);
extern const VecphiClaims *claims_peek(void);
extern uint32 claims_require_tenant_id(void);
extern char *claims_redact_text(const char *str);
extern void claims_init(void);

/*
 * Called before the claims of the transaction change (set_claims(),
 * clear_claims()); it raises to refuse the change.  The audit registers one
 * that refuses while a statement reading encrypted data is running, so that
 * claims never appear or change under a scan that started without them.
 */
typedef void (*ClaimsChangeCheck) (void);
extern void claims_set_change_check(ClaimsChangeCheck check);

#endif							/* VECPHI_CLAIMS_H */
