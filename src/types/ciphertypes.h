/*-------------------------------------------------------------------------
 *
 * ciphertypes.h
 *	  Finding vecphi's ciphertext types in a database: the extension's
 *	  schema, the OIDs of evector and etext, whether a column type is one.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_CIPHERTYPES_H
#define VECPHI_CIPHERTYPES_H

extern bool vecphi_extension_row(Oid *nsp, Oid *owner, bool missing_ok);
extern Oid	vecphi_extension_namespace(bool missing_ok);
extern void vecphi_ciphertext_types_in(Oid nsp, Oid *evector, Oid *etext);
extern void vecphi_ciphertext_types(Oid *evector, Oid *etext);
extern uint8 ciphertext_type_kind(Oid typid, Oid evector, Oid etext);
extern bool ciphertext_type_holds(Oid typid, Oid evector, Oid etext);

#endif							/* VECPHI_CIPHERTYPES_H */
