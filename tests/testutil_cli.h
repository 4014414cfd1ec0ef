/* tests/testutil_cli.h — running programs from a test: the retort binary of
 * this build (RETORT_BIN, else ./retort) with its output kept in a log, and
 * .venv's python for the checks that transformers / PEFT load what retort
 * wrote; and the "abc=" -> "cba" task the command-line tests train on.
 *
 * A test that runs retort works in a temporary directory `dir` and appends
 * every command's output to dir/log; RUN fails the test on a non-zero exit
 * after showing the log's end. */
#ifndef RETORT_TESTUTIL_CLI_H
#define RETORT_TESTUTIL_CLI_H

#include <sys/types.h>
#include <sys/wait.h>

#include "tests/testutil.h"

#define PYTHON ".venv/bin/python"

static inline const char *bin(void) {
    return getenv("RETORT_BIN") ? getenv("RETORT_BIN") : "./retort";
}

/* Runs "retort <args>" with its output appended to dir/log; its exit status. */
static inline int retort(const char *dir, const char *args) {
    char cmd[6144];
    snprintf(cmd, sizeof cmd, "%s %s >>%s/log 2>&1", bin(), args, dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* The last 20 lines of dir/log, on stderr. */
static inline void show_log(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "tail -20 %s/log >&2", dir);
    if (system(cmd) != 0) fprintf(stderr, "(no log)\n");
}

/* RUN(dir, fmt, ...): retort with the printf-formatted arguments; the test
 * fails (after show_log) unless it exits 0. */
#define RUN(dir, ...)                                                                       \
    do {                                                                                    \
        char args_[4096];                                                                   \
        snprintf(args_, sizeof args_, __VA_ARGS__);                                         \
        int rc_ = retort(dir, args_);                                                       \
        if (rc_ != 0) show_log(dir);                                                        \
        cr_assert_eq(rc_, 0, "retort %s exited with %d", args_, rc_);                       \
    } while (0)

/* Runs .venv/bin/python with argv (argv[0] = PYTHON, NULL-terminated); its
 * exit status, or 77 when there is no .venv (make fixtures / make bench
 * create it) or the program could not start. */
static inline int run_python(const char *const *argv) {
    if (access(PYTHON, X_OK) != 0) return 77;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execv(PYTHON, (char *const *)argv);
        _exit(77);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* A word of 3 to 5 letters from a-f drawn from r, into s, and its reversal
 * into rev (both NUL-terminated): the task "abc=" -> "cba". */
static inline void reversal_word(Rng *r, char s[8], char rev[8]) {
    int k = 3 + (int)rng_below(r, 3);
    for (int j = 0; j < k; j++) s[j] = (char)('a' + rng_below(r, 6));
    for (int j = 0; j < k; j++) rev[j] = s[k - 1 - j];
    s[k] = rev[k] = 0;
}

#endif
