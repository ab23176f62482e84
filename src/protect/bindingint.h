/*-------------------------------------------------------------------------
 *
 * bindingint.h
 *	  What binding.c and bindingcatalog.c share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef VECPHI_BINDINGINT_H
#define VECPHI_BINDINGINT_H

/* A registered table's catalog row. */
typedef struct BindingEntry
{
	Oid			relid;
	char	   *label;
	int			nnames;
	char	  **names;
	char	  **labels;
} BindingEntry;

extern bool binding_lookup(Oid relid, BindingEntry *entry);
extern char *binding_relname(Oid relid);
extern bool binding_holds_unbound_values(Oid relid);

#endif							/* VECPHI_BINDINGINT_H */
