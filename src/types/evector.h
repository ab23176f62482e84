/*-------------------------------------------------------------------------
 *
 * evector.h
 *	  Access to the plaintext of evector arguments for distance functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_EVECTOR_H
#define VECPHI_EVECTOR_H

#include "fmgr.h"

extern const float4 *evector_plaintext_arg(FunctionCallInfo fcinfo, int argno,
										   uint32 *dim);

#endif							/* VECPHI_EVECTOR_H */
