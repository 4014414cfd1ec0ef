/* fuzz/fuzz.h — what every harness shares: the libFuzzer entry point, a
 * per-process scratch directory for parsers that read files, and a check that
 * stops the run on a broken promise.
 *
 * A harness is one file, fuzz/fuzz_NAME.c, defining LLVMFuzzerTestOneInput.
 * It is built twice: with clang and -fsanitize=fuzzer,address,undefined for
 * `make fuzz` (libFuzzer supplies main), and with the normal build's compiler
 * and flags plus fuzz/replay_main.c for `make test`, which runs it over every
 * file of fuzz/corpus/NAME/ (the seeds and each fixed crash's reproducer).
 *
 * A harness never exits and never leaks: the parsers it drives report bad
 * input through err_set and a return code, so an exit(), an abort, a
 * sanitizer report or a leak is a bug in the parser (or a broken promise that
 * FUZZ_CHECK names). Files go to a directory made once per process under
 * $FUZZ_TMPDIR, /dev/shm (no disk writes, fsync is free) or /tmp, removed at
 * exit. */
#ifndef RETORT_FUZZ_H
#define RETORT_FUZZ_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A promise of the code under test: on failure, say which and abort, which
 * libFuzzer records as a crash with its input. */
#define FUZZ_CHECK(cond, ...)                                                                   \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: broken promise: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fprintf(stderr, "\n");                                                              \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

/* libhdf5 (not built with the sanitizers) leaks on some error paths of its
 * own when it parses a corrupt file (H5Dopen2 -> H5O_protect on a damaged
 * object header); nothing a caller can free. Leaks whose stack passes through
 * it are not ours: LeakSanitizer reads this list when the harness starts. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libhdf5\n"; }

static char fuzz_dir_path[512];

static void fuzz_dir_remove(void) {
    if (fuzz_dir_path[0]) rm_rf(fuzz_dir_path);
}

/* The scratch directory of this process (made on first use). */
static inline const char *fuzz_dir(void) {
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    const char *base = getenv("FUZZ_TMPDIR");
    if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NULL;
    if (!base) base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/retort-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_dir_path)) {
        fprintf(stderr, "fuzz: cannot make a scratch directory under %s: %s\n", base,
                strerror(errno));
        abort();
    }
    atexit(fuzz_dir_remove);
    return fuzz_dir_path;
}

/* The path of `name` in the scratch directory, into out. */
static inline void fuzz_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", fuzz_dir(), name);
}

/* Writes data[0:size] to `name` in the scratch directory; the path goes to out. */
static inline void fuzz_write(char *out, size_t cap, const char *name, const void *data,
                              size_t size) {
    fuzz_path(out, cap, name);
    FILE *f = fopen(out, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s: %s\n", out, strerror(errno));
        abort();
    }
}

/* data[0:size] as a NUL-terminated string (free it); stops at the first NUL. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size) {
    char *s = xmalloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* The repository's fuzz/ folder (harnesses run from the repository root, as
 * the tests do), or $FUZZ_DATA when set. */
static inline const char *fuzz_data_dir(void) {
    const char *d = getenv("FUZZ_DATA");
    return d && *d ? d : "fuzz";
}

#endif
