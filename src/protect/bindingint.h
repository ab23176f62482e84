/*-------------------------------------------------------------------------
 *
 * bindingint.h
 *	  What bindingcatalog.c offers binding.c.
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

/* bindingcatalog.c, for binding.c (which sits above it) */
extern bool binding_lookup(Oid relid, BindingEntry *entry);
extern char *binding_relname(Oid relid);
extern char *binding_register(Oid relid, const char *wanted, bool *registered);

#endif							/* VECPHI_BINDINGINT_H */
