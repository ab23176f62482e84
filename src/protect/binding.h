/*-------------------------------------------------------------------------
 *
 * binding.h
 *	  Ciphertext bound to its place: table label, column and row key.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_BINDING_H
#define VECPHI_BINDING_H

extern void binding_init(void);

/* rls.c: OIDs of evector and etext in the extension's schema. */
extern void vecphi_ciphertext_types(Oid *evector, Oid *etext);

#endif							/* VECPHI_BINDING_H */
