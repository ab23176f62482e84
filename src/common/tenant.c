/*-------------------------------------------------------------------------
 *
 * tenant.c
 *	  The rule for tenant names, shared by the keyring and the claims.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "vecphi.h"

/*
 * Tenant names: 1..63 of [A-Za-z0-9_-], not starting with "-": safe as file
 * names, as one shell word, and never taken for an option by a key
 * provider's command.  A leading "_" is allowed: no shell, getopt or file
 * system gives it a meaning.
 */
bool
vecphi_tenant_name_is_valid(const char *name)
{
	size_t		len = strlen(name);
	size_t		i;

	if (len == 0 || len > VECPHI_TENANT_NAME_MAX || name[0] == '-')
		return false;
	for (i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}
