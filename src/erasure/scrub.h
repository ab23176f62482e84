/*-------------------------------------------------------------------------
 *
 * scrub.h
 *	  Secure erasure: zeroing what deleted rows leave in heap and TOAST
 *	  pages, after VACUUM and on demand.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_SCRUB_H
#define VECPHI_SCRUB_H

#include "access/genam.h"

extern bool vecphi_scrub_on_vacuum;

extern void scrub_init(void);

#endif							/* VECPHI_SCRUB_H */
