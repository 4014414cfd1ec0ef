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
#include <stdio.h>

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
/* Writes data to path + ".tmp", fsyncs, renames over path. 0 or -1 (error set);
 * on failure path is left as it was and the .tmp removed. */
int write_file_atomic(const char *path, const void *data, size_t len);
int fsync_dir(const char *dir);
/* fsyncs the directory that holds path. */
int fsync_parent(const char *path);
/* The error for a write of path, through its temporary file tmp (still on
 * disk; the caller removes it), that failed with errnum. For a full disk
 * (ENOSPC, EDQUOT) or the file-size limit (EFBIG) it says how far tmp got, how
 * much space the file needs (`needed` bytes: the whole file's size, or with
 * `at_least` what is known so far; 0: unknown) and how much the directory has
 * free once tmp is removed; for any error, that path is left as it was.
 * Returns -1. */
int err_write(const char *path, const char *tmp, int errnum, uint64_t needed, int at_least);
/* Finishes a file written through f opened on tmp: flushes, fsyncs and
 * closes f, renames tmp over path and fsyncs the directory. Any failure
 * removes tmp, leaves path as it was and sets the error (err_write). 0 or -1. */
int file_commit(FILE *f, const char *tmp, const char *path);
/* Closes f and removes tmp: the write is abandoned. */
void file_discard(FILE *f, const char *tmp);
/* buf = dir + "/" + name; -1 with error set when it does not fit in cap. */
int path_join(char *buf, size_t cap, const char *dir, const char *name);
int mkdir_p(const char *path);
int rm_rf(const char *path);
int path_exists(const char *path);

/* ---- time ---- */
double now_seconds(void);

#endif
