/* util/util.h — small things every part of retort uses: error reporting,
 * a reproducible random number generator, checked allocation, file helpers.
 *
 * Errors from outside the program (files, configs, users) are reported with
 * err_set(): it records a message saying what, where and how to fix it, and
 * returns -1 so call sites read `return err_set(...)`. The command line prints
 * err_msg() and exits non-zero. Invariants of our own code use assert().
 */
#ifndef RETORT_UTIL_H
#define RETORT_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* ---- errors ---- */
int err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *err_msg(void);
void err_clear(void);

/* ---- allocation that never returns NULL (out of memory is fatal) ---- */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* ---- random numbers: SplitMix64 seeding + xoshiro256** ----
 * The whole state is four words so it can be stored in a checkpoint. */
typedef struct { uint64_t s[4]; } Rng;
void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_u64(Rng *r);
double rng_uniform(Rng *r);               /* [0, 1) */
double rng_normal(Rng *r);                /* standard normal (Box-Muller) */
uint64_t rng_below(Rng *r, uint64_t n);   /* uniform in [0, n), unbiased */

/* ---- files ---- */
/* Reads a whole file; returns NULL and sets the error on failure. */
char *read_file(const char *path, size_t *len);
/* Writes data to path + ".tmp", fsyncs, renames over path. 0 or -1 (error set). */
int write_file_atomic(const char *path, const void *data, size_t len);
int fsync_dir(const char *dir);
/* buf = dir + "/" + name; -1 with error set when it does not fit in cap. */
int path_join(char *buf, size_t cap, const char *dir, const char *name);
int mkdir_p(const char *path);
int rm_rf(const char *path);
int path_exists(const char *path);

/* ---- time ---- */
double now_seconds(void);

#endif
