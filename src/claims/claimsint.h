/*-------------------------------------------------------------------------
 *
 * claimsint.h
 *	  What jwt.c (token verification) offers claims.c (the claims of the
 *	  transaction), inside the claims module.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_CLAIMSINT_H
#define VECPHI_CLAIMSINT_H

#include "datatype/timestamp.h"

#include "claims.h"

/* Allowance for clocks of token issuer and server that disagree. */
#define CLAIMS_CLOCK_SKEW_SECS	30

extern void jwt_settings_init(void);
extern VecphiClaims *jwt_verify(const char *token);
extern void token_reject(const char *detail);
extern int64 unix_now(TimestampTz ts);

#endif							/* VECPHI_CLAIMSINT_H */
