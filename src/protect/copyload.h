/*-------------------------------------------------------------------------
 *
 * copyload.h
 *	  COPY ... FROM STDIN into a protected table for a claimant: loaded
 *	  row by row as INSERTs so row-level security applies (copyload.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_COPYLOAD_H
#define VECPHI_COPYLOAD_H

extern void copyload_init(void);

#endif							/* VECPHI_COPYLOAD_H */
