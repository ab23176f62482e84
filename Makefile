# vecphi: PGXS build.  The extension version comes from vecphi.control only.

EXTENSION = vecphi
EXTVERSION = $(shell sed -n "s/^default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" vecphi.control)

MODULE_big = vecphi
# Sources by layer, bottom up (docs/architecture.md).
OBJS = \
	src/common/privsql.o \
	src/common/report.o \
	src/common/tenant.o \
	src/common/hooks.o \
	src/common/stats.o \
	src/common/citus.o \
	src/crypto/crypto.o \
	src/crypto/keyfile.o \
	src/keys/keysettings.o \
	src/keys/keys.o \
	src/keys/keyprovider.o \
	src/keys/keyadmin.o \
	src/keys/keysync.o \
	src/claims/claims.o \
	src/claims/jwt.o \
	src/types/envelope.o \
	src/types/evector.o \
	src/types/evector_query.o \
	src/types/etext.o \
	src/types/distance.o \
	src/types/ciphertypes.o \
	src/ehnsw/ehnsw.o \
	src/ehnsw/ehnswbuild.o \
	src/ehnsw/ehnswcheck.o \
	src/ehnsw/ehnswinsert.o \
	src/ehnsw/ehnswscan.o \
	src/ehnsw/ehnswsettings.o \
	src/ehnsw/ehnswvisit.o \
	src/ehnsw/ehnswutils.o \
	src/ehnsw/ehnswvacuum.o \
	src/audit/audit.o \
	src/audit/auditchain.o \
	src/audit/auditcitus.o \
	src/audit/auditverify.o \
	src/audit/auditexec.o \
	src/audit/auditplan.o \
	src/audit/auditqueue.o \
	src/audit/auditsettings.o \
	src/audit/auditstats.o \
	src/audit/auditwriter.o \
	src/protect/rls.o \
	src/protect/binding.o \
	src/protect/bindingcatalog.o \
	src/protect/protectddl.o \
	src/protect/protectstate.o \
	src/protect/copyload.o \
	src/erasure/scrub.o \
	src/migrate/migrateddl.o \
	src/migrate/migrate.o \
	src/vecphi.o

# 0.1.0 is the first released version; a new install runs its script and
# then each update script in turn (PostgreSQL finds the path), so the scripts
# below are the only place new SQL objects go: never edit a released script.
DATA = sql/vecphi--0.1.0.sql $(wildcard sql/vecphi--*--*.sql)

# pg_regress suites (sql/<name>.sql, expected/<name>.out).  They need a
# server started with shared_preload_libraries = 'vecphi' and test keys, so
# test/run_tests.sh runs them against a temporary instance; see README.md.
REGRESS = setup evector_input etext claims keys distance exact_search ehnsw rls adversarial audit erasure citus_policies ehnsw_recent claims_json ehnsw_debug_settings ehnsw_shred_vacuum inputs inputs_large tokens audit_paths ehnsw_unwind owner_code privsql audit_integrity binding explain_redaction query_vector migrate monitoring copy_load
REGRESS_OPTS = --inputdir=. --load-extension=pgcrypto

# pg_isolation_regress specs (specs/<name>.spec, expected/<name>.out): the
# ehnsw index under concurrent inserts, scans, VACUUM and key operations.
# test/run_tests.sh runs them on a temporary instance as it does REGRESS.
ISOLATION = ehnsw_insert_scan ehnsw_insert_vacuum ehnsw_scan_vacuum \
	ehnsw_insert_insert ehnsw_rotate_scan ehnsw_shred_scan \
	ehnsw_insert_concurrent ehnsw_vacuum_concurrent
ISOLATION_OPTS = --inputdir=. --load-extension=pgcrypto

SHLIB_LINK = -lcrypto

# Warnings are errors: every warning the server headers allow us to enable.
PG_CFLAGS = -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wno-sign-compare -Wno-missing-field-initializers -Wshadow=compatible-local \
	-Wformat=2 -Wno-format-nonliteral -Wold-style-definition \
	-Wnull-dereference -Wduplicated-cond -Wlogical-op
# One -I per layer folder: header names are unique across src/, so a file
# includes "claims.h" wherever it lives, files that move between folders
# need no edit, and test/tools/layers.sh maps each header to its folder.
VECPHI_DIRS = common crypto keys claims types ehnsw audit protect erasure migrate
PG_CPPFLAGS = -I$(srcdir)/src $(addprefix -I$(srcdir)/src/,$(VECPHI_DIRS))

# No LLVM bitcode: JIT inlining buys nothing for the crypto-bound paths, and
# it would make clang a build dependency.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The distance kernels are compiled for several instruction sets and picked
# at load time (see src/types/distance.c), so keep the generic build portable.
src/types/distance.o src/ehnsw/ehnswutils.o: override CFLAGS += -O3 -ftree-vectorize -fno-math-errno \
	-fassociative-math -fno-signed-zeros -fno-trapping-math

.PHONY: bench
bench:
	$(MAKE) -C test/bench

# PGXS does not track header dependencies: rebuild everything when any of
# our headers changes, so no object is ever built against a stale struct.
$(OBJS): $(wildcard $(srcdir)/src/*.h $(srcdir)/src/*/*.h)
