/*-------------------------------------------------------------------------
 *
 * microbench.c
 *	  Micro-benchmarks of vecphi's hot paths: AES-256-GCM sealing and
 *	  opening of vector envelopes, the distance kernels, and the per-row
 *	  work of an exact search over encrypted vectors.
 *
 * The code timed is the extension's own, minus the server: the kernels are
 * src/types/kernels.h itself, compiled with the flags src/types/distance.c gets; the
 * AES-GCM calls are those of src/crypto/crypto.c, on envelopes laid out as in
 * src/types/envelope.h; and the encrypted distance repeats, row by row, what
 * evector_plaintext_arg() and distance.c do.  What the server adds on top
 * (executor, detoasting, palloc, claims and key lookups) is measured end to
 * end by sql_bench.sh instead.
 *
 * Every figure is single-threaded, over a working set larger than the CPU
 * caches (as a sequential scan of a real table is), and the best of a few
 * repetitions of a fixed amount of work.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* kernels.h needs only <math.h> (for sqrt) ahead of it. */
#include "../../src/types/kernels.h"

/* Sizes and envelope layout, as in src/crypto/crypto.h and src/types/envelope.h. */
#define KEY_LEN				32
#define HEADER_LEN			16
#define NONCE_LEN			12
#define TAG_LEN				16
#define ENVELOPE_OVERHEAD	(HEADER_LEN + NONCE_LEN + TAG_LEN)
#define FORMAT_V1			1
#define KIND_VECTOR			1

/* Any nonzero ids will do; the header only has to be well formed. */
#define BENCH_TENANT_ID		1
#define BENCH_DEK_VERSION	1

/* Timing: grow a run until it is long enough to scale from, then time. */
#define CALIBRATE_SECONDS	0.05
#define DEFAULT_RUN_SECONDS	0.4
#define REPETITIONS			3

/*
 * 64 MiB of plaintext per dimension setting: beyond the last-level cache of
 * the machines this runs on, so rows come from memory as in a table scan.
 */
#define DEFAULT_WORKING_SET_MB	64
#define MIN_ROWS			64

#define STRINGIFY_(x)		#x
#define STRINGIFY(x)		STRINGIFY_(x)

static const int bench_dims[] = {128, 784, 1536};

#define NDIMS		((int) (sizeof(bench_dims) / sizeof(bench_dims[0])))

/* One SQL distance function, as distance.c computes it from the kernels. */
typedef double (*DistanceFn) (const float *a, const float *b, int n);

static double
distance_l2(const float *a, const float *b, int n)
{
	return sqrt((double) kernel_l2_squared(a, b, n));
}

static double
distance_inner_product(const float *a, const float *b, int n)
{
	return (double) kernel_inner_product(a, b, n);
}

static double
distance_cosine(const float *a, const float *b, int n)
{
	return kernel_cosine_distance(a, b, n);
}

typedef struct DistanceOp
{
	const char *name;
	DistanceFn	fn;
} DistanceOp;

static const DistanceOp distance_ops[] = {
	{"l2", distance_l2},
	{"ip", distance_inner_product},
	{"cosine", distance_cosine},
};

#define NOPS		((int) (sizeof(distance_ops) / sizeof(distance_ops[0])))

/* An AES-256-GCM key scheduled once for each direction, as VecphiAead. */
typedef struct Aead
{
	EVP_CIPHER_CTX *encrypt;
	EVP_CIPHER_CTX *decrypt;
} Aead;

/* The cached plaintext of one distance argument, as PlaintextSlot. */
typedef struct Slot
{
	uint8_t    *envelope;		/* copy of the envelope last opened */
	size_t		envelope_len;	/* 0 while empty */
	float	   *x;				/* its plaintext */
} Slot;

/* Everything one dimension setting works on. */
typedef struct Bench
{
	int			dim;
	size_t		value_len;		/* plaintext bytes of one vector */
	size_t		env_len;		/* bytes of one envelope */
	long		nrows;
	float	   *plain;			/* nrows plaintext vectors, back to back */
	uint8_t    *env;			/* the same rows as envelopes */
	float	   *query;
	uint8_t    *query_env;
	float	   *scratch;		/* envelope_open()'s palloc'd plaintext */
	Slot		slot[2];		/* argument 0 (row) and 1 (query) */
	Aead		aead;
	DistanceFn	distance;		/* what the distance workloads compute */
	long		cursor;			/* next row: runs carry on through the table */
} Bench;

typedef void (*WorkFn) (Bench *b, long nops);

/* Results of one dimension setting. */
typedef struct Result
{
	int			dim;
	long		nrows;
	double		encrypt_per_s;
	double		decrypt_per_s;
	double		plain_per_s[NOPS];
	double		encrypted_per_s[NOPS];
} Result;

/*
 * Everything a workload computes is folded into this, so the compiler has
 * to do the work; a volatile store cannot be optimised away.
 */
static volatile double sink;

static double run_seconds = DEFAULT_RUN_SECONDS;

static void die(const char *fmt,...)
			__attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "microbench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

/* An OpenSSL call failed: print its error queue and stop. */
static void die_openssl(const char *what) __attribute__((noreturn));

static void
die_openssl(const char *what)
{
	fprintf(stderr, "microbench: %s failed\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* Nonce pool as in src/crypto/crypto.c: RAND_bytes() 4 kB at a time. */
#define NONCE_POOL_SIZE 4096
static uint8_t nonce_pool[NONCE_POOL_SIZE];
static int	nonce_pool_used = NONCE_POOL_SIZE;

static void
next_nonce(uint8_t *nonce)
{
	if (nonce_pool_used + NONCE_LEN > NONCE_POOL_SIZE)
	{
		if (RAND_bytes(nonce_pool, NONCE_POOL_SIZE) != 1)
			die_openssl("RAND_bytes");
		nonce_pool_used = 0;
	}
	memcpy(nonce, nonce_pool + nonce_pool_used, NONCE_LEN);
	nonce_pool_used += NONCE_LEN;
}

static void *
alloc_aligned(size_t size)
{
	void	   *p;

	/* Cache-line aligned, so that alignment cannot vary between runs. */
	if (posix_memalign(&p, 64, size) != 0)
		die("out of memory");
	return p;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* xorshift64*: fast, reproducible test data; quality is irrelevant here. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static float
random_float(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	/* Top 24 bits: a float in [0, 1), like random()::real in SQL. */
	return (float) ((rng_state * 0x2545F4914F6CDD1DULL) >> 40) / 16777216.0f;
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

static uint32_t
get_be32(const uint8_t *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

static void
aead_create(Aead *aead)
{
	uint8_t		key[KEY_LEN];

	if (RAND_bytes(key, KEY_LEN) != 1)
		die_openssl("RAND_bytes");
	aead->encrypt = EVP_CIPHER_CTX_new();
	aead->decrypt = EVP_CIPHER_CTX_new();
	if (aead->encrypt == NULL || aead->decrypt == NULL ||
		EVP_EncryptInit_ex(aead->encrypt, EVP_aes_256_gcm(), NULL, key, NULL) != 1 ||
		EVP_DecryptInit_ex(aead->decrypt, EVP_aes_256_gcm(), NULL, key, NULL) != 1)
		die_openssl("AES-256-GCM key setup");
	OPENSSL_cleanse(key, KEY_LEN);
}

static void
aead_destroy(Aead *aead)
{
	EVP_CIPHER_CTX_free(aead->encrypt);
	EVP_CIPHER_CTX_free(aead->decrypt);
}

/*
 * Seal one vector into env: envelope_seal() with crypto_aead_seal(), call
 * for call, including the fresh nonce from the DRBG.
 */
static void
seal_vector(Aead *aead, const float *x, int dim, uint8_t *env)
{
	EVP_CIPHER_CTX *ctx = aead->encrypt;
	int			len = dim * (int) sizeof(float);
	uint8_t    *nonce = env + HEADER_LEN;
	uint8_t    *ciphertext = nonce + NONCE_LEN;
	int			outlen;

	env[0] = FORMAT_V1;
	env[1] = KIND_VECTOR;
	env[2] = 0;
	env[3] = 0;
	put_be32(env + 4, BENCH_TENANT_ID);
	put_be32(env + 8, BENCH_DEK_VERSION);
	put_be32(env + 12, (uint32_t) dim);
	next_nonce(nonce);

	if (EVP_EncryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
		EVP_EncryptUpdate(ctx, NULL, &outlen, env, HEADER_LEN) != 1 ||
		EVP_EncryptUpdate(ctx, ciphertext, &outlen, (const uint8_t *) x, len) != 1 ||
		EVP_EncryptFinal_ex(ctx, ciphertext + outlen, &outlen) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
							ciphertext + len) != 1)
		die_openssl("AES-256-GCM encryption");
}

/*
 * Open one envelope into out: the checks of envelope_read_header() that
 * need no server, then crypto_aead_open().  False when authentication
 * fails.
 */
static bool
open_envelope(Aead *aead, const uint8_t *env, size_t env_len, float *out)
{
	EVP_CIPHER_CTX *ctx = aead->decrypt;
	const uint8_t *nonce = env + HEADER_LEN;
	const uint8_t *ciphertext = nonce + NONCE_LEN;
	uint32_t	count = get_be32(env + 12);
	int			len;
	int			outlen = 0;
	int			finallen;

	if (env_len < ENVELOPE_OVERHEAD || env[0] != FORMAT_V1 ||
		env[1] != KIND_VECTOR || env[2] != 0 || env[3] != 0 ||
		get_be32(env + 4) == 0 || get_be32(env + 8) == 0 || count < 1 ||
		env_len != ENVELOPE_OVERHEAD + (size_t) count * sizeof(float))
		die("envelope is damaged: bad header or length");
	len = (int) (count * sizeof(float));

	if (EVP_DecryptInit_ex(ctx, NULL, NULL, NULL, nonce) != 1 ||
		EVP_DecryptUpdate(ctx, NULL, &outlen, env, HEADER_LEN) != 1 ||
		EVP_DecryptUpdate(ctx, (uint8_t *) out, &outlen, ciphertext, len) != 1 ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
							(void *) (ciphertext + len)) != 1)
		die_openssl("AES-256-GCM decryption");
	if (EVP_DecryptFinal_ex(ctx, (uint8_t *) out + outlen, &finallen) != 1)
	{
		ERR_clear_error();
		OPENSSL_cleanse(out, len);
		return false;
	}
	return true;
}

/*
 * Plaintext of distance argument argno, as evector_plaintext_arg() gets
 * it: a byte comparison with the envelope last opened for that argument
 * (which a constant query passes, at the cost of comparing all of it), or
 * else open the envelope, copy envelope and plaintext into the slot and
 * wipe the decrypted buffer.
 */
static const float *
plaintext_arg(Bench *b, int argno, const uint8_t *env)
{
	Slot	   *slot = &b->slot[argno];

	if (slot->envelope_len == b->env_len &&
		memcmp(slot->envelope, env, b->env_len) == 0)
		return slot->x;

	if (!open_envelope(&b->aead, env, b->env_len, b->scratch))
		die("a distance argument failed authentication");
	memcpy(slot->envelope, env, b->env_len);
	slot->envelope_len = b->env_len;
	memcpy(slot->x, b->scratch, b->value_len);
	OPENSSL_cleanse(b->scratch, b->value_len);
	return slot->x;
}

static inline const float *
row_plain(const Bench *b, long row)
{
	return b->plain + (size_t) row * b->dim;
}

static inline uint8_t *
row_env(const Bench *b, long row)
{
	return b->env + (size_t) row * b->env_len;
}

/*
 * Draw nonces alone, from a pool refilled 4 kB at a time like
 * crypto_random_nonce() in src/crypto/crypto.c (one RAND_bytes() call costs about
 * as much whatever its size).
 */
static void
work_nonce(Bench *b, long nops)
{
	uint8_t		nonce[NONCE_LEN];
	unsigned	acc = 0;
	long		i;

	for (i = 0; i < nops; i++)
	{
		next_nonce(nonce);
		acc += nonce[0];
	}
	sink += acc;
}

/* Encrypt rows, rewriting the table's envelopes as it goes. */
static void
work_encrypt(Bench *b, long nops)
{
	long		row = b->cursor;
	unsigned	acc = 0;
	long		i;

	for (i = 0; i < nops; i++)
	{
		uint8_t    *env = row_env(b, row);

		seal_vector(&b->aead, row_plain(b, row), b->dim, env);
		acc += env[b->env_len - 1];
		if (++row == b->nrows)
			row = 0;
	}
	b->cursor = row;
	sink += acc;
}

/* Decrypt and verify rows into one buffer, as decrypt() does per row. */
static void
work_decrypt(Bench *b, long nops)
{
	long		row = b->cursor;
	double		acc = 0.0;
	long		i;

	for (i = 0; i < nops; i++)
	{
		if (!open_envelope(&b->aead, row_env(b, row), b->env_len, b->scratch))
			die("row %ld failed authentication", row);
		acc += b->scratch[0];
		if (++row == b->nrows)
			row = 0;
	}
	b->cursor = row;
	sink += acc;
}

/* A scan of plaintext rows against one query: pgvector's case. */
static void
work_plain_distance(Bench *b, long nops)
{
	long		row = b->cursor;
	double		acc = 0.0;
	long		i;

	for (i = 0; i < nops; i++)
	{
		acc += b->distance(row_plain(b, row), b->query, b->dim);
		if (++row == b->nrows)
			row = 0;
	}
	b->cursor = row;
	sink += acc;
}

/*
 * A scan of encrypted rows against an encrypted query, as
 * "embedding <-> $q" runs: argument 0 changes every row and is decrypted,
 * argument 1 is the cached query.
 */
static void
work_encrypted_distance(Bench *b, long nops)
{
	long		row = b->cursor;
	double		acc = 0.0;
	long		i;

	for (i = 0; i < nops; i++)
	{
		const float *x = plaintext_arg(b, 0, row_env(b, row));
		const float *q = plaintext_arg(b, 1, b->query_env);

		acc += b->distance(x, q, b->dim);
		if (++row == b->nrows)
			row = 0;
	}
	b->cursor = row;
	sink += acc;
}

static double
time_run(WorkFn work, Bench *b, long nops)
{
	double		start = now_seconds();

	work(b, nops);
	return now_seconds() - start;
}

/*
 * Operations per second of a workload: calibrate (which also warms up),
 * then the best of REPETITIONS runs of about run_seconds each.
 */
static double
measure(WorkFn work, Bench *b)
{
	long		nops = 16;
	double		t;
	double		best = DBL_MAX;
	int			rep;

	for (;;)
	{
		t = time_run(work, b, nops);
		if (t >= CALIBRATE_SECONDS)
			break;
		nops *= (t < CALIBRATE_SECONDS / 16) ? 16 : 4;
	}
	nops = (long) ((double) nops * run_seconds / t) + 1;

	for (rep = 0; rep < REPETITIONS; rep++)
	{
		t = time_run(work, b, nops);
		if (t < best)
			best = t;
	}
	return (double) nops / best;
}

static void
bench_init(Bench *b, int dim, size_t working_set)
{
	long		row;
	int			i;

	memset(b, 0, sizeof(*b));
	b->dim = dim;
	b->value_len = (size_t) dim * sizeof(float);
	b->env_len = ENVELOPE_OVERHEAD + b->value_len;
	b->nrows = (long) (working_set / b->value_len);
	if (b->nrows < MIN_ROWS)
		b->nrows = MIN_ROWS;

	b->plain = alloc_aligned((size_t) b->nrows * b->value_len);
	b->env = alloc_aligned((size_t) b->nrows * b->env_len);
	b->query = alloc_aligned(b->value_len);
	b->query_env = alloc_aligned(b->env_len);
	b->scratch = alloc_aligned(b->value_len);
	for (i = 0; i < 2; i++)
	{
		b->slot[i].envelope = alloc_aligned(b->env_len);
		b->slot[i].x = alloc_aligned(b->value_len);
	}
	aead_create(&b->aead);

	for (row = 0; row < b->nrows; row++)
	{
		float	   *x = b->plain + (size_t) row * dim;

		for (i = 0; i < dim; i++)
			x[i] = random_float();
		seal_vector(&b->aead, x, dim, row_env(b, row));
	}
	for (i = 0; i < dim; i++)
		b->query[i] = random_float();
	seal_vector(&b->aead, b->query, dim, b->query_env);
}

static void
bench_free(Bench *b)
{
	int			i;

	aead_destroy(&b->aead);
	for (i = 0; i < 2; i++)
	{
		free(b->slot[i].envelope);
		free(b->slot[i].x);
	}
	free(b->plain);
	free(b->env);
	free(b->query);
	free(b->query_env);
	free(b->scratch);
}

/*
 * Check that what is timed is right: every row decrypts to its original
 * bytes, tampering with ciphertext or header is caught, and the encrypted
 * path gives bit for bit the distance of the plaintext path.
 */
static void
verify(Bench *b)
{
	uint8_t    *env = row_env(b, 0);
	long		row;
	int			op;

	for (row = 0; row < b->nrows; row++)
	{
		if (!open_envelope(&b->aead, row_env(b, row), b->env_len, b->scratch))
			die("verification: row %ld failed authentication", row);
		if (memcmp(b->scratch, row_plain(b, row), b->value_len) != 0)
			die("verification: row %ld did not decrypt to its original bytes", row);
	}

	/* One flipped bit of ciphertext, then of the header (the AAD). */
	env[HEADER_LEN + NONCE_LEN] ^= 0x01;
	if (open_envelope(&b->aead, env, b->env_len, b->scratch))
		die("verification: altered ciphertext passed authentication");
	env[HEADER_LEN + NONCE_LEN] ^= 0x01;
	env[7] ^= 0x02;				/* tenant id 1 -> 3 */
	if (open_envelope(&b->aead, env, b->env_len, b->scratch))
		die("verification: altered header passed authentication");
	env[7] ^= 0x02;

	for (op = 0; op < NOPS; op++)
	{
		DistanceFn	fn = distance_ops[op].fn;

		for (row = 0; row < b->nrows; row++)
		{
			double		plain = fn(row_plain(b, row), b->query, b->dim);
			const float *x = plaintext_arg(b, 0, row_env(b, row));
			const float *q = plaintext_arg(b, 1, b->query_env);
			double		encrypted = fn(x, q, b->dim);

			if (memcmp(&plain, &encrypted, sizeof(double)) != 0 || isnan(plain))
				die("verification: %s distance of row %ld is %.17g on the plaintext path but %.17g on the encrypted one",
					distance_ops[op].name, row, plain, encrypted);
		}
	}
}

static void
bench_dim(Result *r, int dim, size_t working_set)
{
	Bench		b;
	int			op;

	bench_init(&b, dim, working_set);
	r->dim = dim;
	r->nrows = b.nrows;

	r->encrypt_per_s = measure(work_encrypt, &b);
	/* After encrypt, so the envelopes it rewrote are checked too. */
	verify(&b);
	r->decrypt_per_s = measure(work_decrypt, &b);

	for (op = 0; op < NOPS; op++)
	{
		b.distance = distance_ops[op].fn;
		r->plain_per_s[op] = measure(work_plain_distance, &b);
		r->encrypted_per_s[op] = measure(work_encrypted_distance, &b);
	}
	bench_free(&b);
}

/* The target_clones variant the kernels' resolvers pick on this CPU. */
static const char *
kernel_clone_in_use(void)
{
	if (STRINGIFY(VECPHI_KERNEL_CLONES)[0] == '\0')
		return "none: kernels.h is built without target_clones here";
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	/* GCC's resolvers rank avx512f above fma above default. */
	if (__builtin_cpu_supports("avx512f"))
		return "avx512f";
	if (__builtin_cpu_supports("fma"))
		return "fma";
#endif
	return "default";
}

static void
print_cpu(void)
{
	FILE	   *f = fopen("/proc/cpuinfo", "r");
	char		line[512];

	if (f != NULL)
	{
		while (fgets(line, sizeof(line), f) != NULL)
		{
			if (strncmp(line, "model name", 10) == 0)
			{
				char	   *v = strchr(line, ':');

				if (v != NULL)
					printf("cpu:          %s", v + 2);
				break;
			}
		}
		fclose(f);
	}
	printf("online cpus:  %ld (every figure below uses one)\n",
		   sysconf(_SC_NPROCESSORS_ONLN));
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	printf("cpu features: avx512f %s, fma %s",
		   __builtin_cpu_supports("avx512f") ? "yes" : "no",
		   __builtin_cpu_supports("fma") ? "yes" : "no");
#ifndef __clang__
	/* What OpenSSL's AES-GCM can use; clang does not know these names. */
	printf(", aes %s, vaes %s, vpclmulqdq %s",
		   __builtin_cpu_supports("aes") ? "yes" : "no",
		   __builtin_cpu_supports("vaes") ? "yes" : "no",
		   __builtin_cpu_supports("vpclmulqdq") ? "yes" : "no");
#endif
	putchar('\n');
#endif
	printf("kernels:      %s\n", STRINGIFY(VECPHI_KERNEL_CLONES)[0] != '\0' ?
		   STRINGIFY(VECPHI_KERNEL_CLONES) : "(no target_clones)");
	printf("kernel clone: %s\n", kernel_clone_in_use());
	printf("compiler:     %s\n", __VERSION__);
	printf("openssl:      %s\n", OpenSSL_version(OPENSSL_VERSION));
}

static void
print_results(const Result *res, int n, double nonce_per_s)
{
	int			i;
	int			op;

	printf("\nAES-256-GCM per value, as src/crypto/crypto.c: scheduled key, pooled RAND_bytes nonce,\n"
		   "16-byte header as AAD, 16-byte tag (MB = 10^6 plaintext bytes)\n\n");
	printf("%5s %7s %8s %8s %14s %10s\n",
		   "dims", "rows", "bytes", "op", "values/s", "MB/s");
	for (i = 0; i < n; i++)
	{
		double		bytes = (double) res[i].dim * sizeof(float);

		printf("%5d %7ld %8.0f %8s %14.0f %10.1f\n", res[i].dim, res[i].nrows,
			   bytes, "encrypt", res[i].encrypt_per_s,
			   res[i].encrypt_per_s * bytes / 1e6);
		printf("%5d %7ld %8.0f %8s %14.0f %10.1f\n", res[i].dim, res[i].nrows,
			   bytes, "decrypt", res[i].decrypt_per_s,
			   res[i].decrypt_per_s * bytes / 1e6);
	}
	printf("%5s %7s %8d %8s %14.0f %10s   (pooled nonce alone, part of encrypt)\n",
		   "-", "-", NONCE_LEN, "nonce", nonce_per_s, "-");

	printf("\nDistances of every row to one query (distances/s); plain GB/s = 10^9\n"
		   "bytes of row vectors read; encrypted = open the row's envelope, then the\n"
		   "kernel, the query's plaintext being cached; ratio = encrypted/plaintext\n\n");
	printf("%5s %7s %14s %10s %14s %8s\n",
		   "dims", "op", "plaintext/s", "plain GB/s", "encrypted/s", "ratio");
	for (i = 0; i < n; i++)
	{
		double		bytes = (double) res[i].dim * sizeof(float);

		for (op = 0; op < NOPS; op++)
			printf("%5d %7s %14.0f %10.2f %14.0f %8.4f\n", res[i].dim,
				   distance_ops[op].name, res[i].plain_per_s[op],
				   res[i].plain_per_s[op] * bytes / 1e9,
				   res[i].encrypted_per_s[op],
				   res[i].encrypted_per_s[op] / res[i].plain_per_s[op]);
	}
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: microbench [-s working_set_MB] [-t seconds_per_run]\n"
			"  -s  plaintext MB per dimension setting (default %d)\n"
			"  -t  length of each timed run (default %.1f; best of %d)\n",
			DEFAULT_WORKING_SET_MB, DEFAULT_RUN_SECONDS, REPETITIONS);
	exit(2);
}

int
main(int argc, char **argv)
{
	long		working_set_mb = DEFAULT_WORKING_SET_MB;
	Result		res[NDIMS];
	Bench		nonce_bench = {0};
	double		nonce_per_s;
	int			c;
	int			i;

	while ((c = getopt(argc, argv, "s:t:h")) != -1)
	{
		char	   *end;

		errno = 0;
		switch (c)
		{
			case 's':
				working_set_mb = strtol(optarg, &end, 10);
				if (errno != 0 || *end != '\0' || working_set_mb < 1)
					usage();
				break;
			case 't':
				run_seconds = strtod(optarg, &end);
				if (errno != 0 || *end != '\0' || !(run_seconds > 0.0))
					usage();
				break;
			default:
				usage();
		}
	}
	if (optind != argc)
		usage();

	printf("vecphi microbench\n");
	print_cpu();
	printf("working set:  %ld MiB of plaintext per dimension setting; "
		   "best of %d runs of ~%.2f s\n",
		   working_set_mb, REPETITIONS, run_seconds);
	fflush(stdout);

	nonce_per_s = measure(work_nonce, &nonce_bench);
	for (i = 0; i < NDIMS; i++)
		bench_dim(&res[i], bench_dims[i], (size_t) working_set_mb << 20);

	print_results(res, NDIMS, nonce_per_s);
	printf("\nverified: decrypt round trip, tamper detection, encrypted == plaintext distances\n");
	return 0;
}
