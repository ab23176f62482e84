/*
 * asan_shim.c: preloaded after libasan into the postgres server by
 * test/ci/sanitize.sh; never part of the extension.
 *
 * 1. ASan initialises lazily, on the first malloc().  In Debian 12's
 *    postgres that first malloc() happens in libgpg-error's constructor,
 *    inside bindtextdomain() with glibc's _nl_state_lock write-locked; ASan's
 *    initialisation then calls dlerror(), which takes the same lock for
 *    reading and corrupts it, and the server hangs forever in its own
 *    bindtextdomain() call.  Interposing bindtextdomain() to allocate once
 *    before the real function takes the lock makes ASan initialise outside
 *    it.
 * 2. The constructor drops LD_PRELOAD from the environment, so programs
 *    the server starts (archive_command, kek_command) run uninstrumented.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

char	   *bindtextdomain(const char *domainname, const char *dirname);

char *
bindtextdomain(const char *domainname, const char *dirname)
{
	static char *(*real) (const char *, const char *);
	void	   *volatile p = malloc(1);

	free(p);
	if (real == NULL)
		real = (char *(*) (const char *, const char *))
			dlsym(RTLD_NEXT, "bindtextdomain");
	return real(domainname, dirname);
}

__attribute__((constructor))
static void
drop_preload(void)
{
	unsetenv("LD_PRELOAD");
}
