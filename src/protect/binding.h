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

#endif							/* VECPHI_BINDING_H */
