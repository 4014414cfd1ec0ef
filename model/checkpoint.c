/* model/checkpoint.c — atomic checkpoint directories (see checkpoint.h);
 * config.json is model/hf_config.c's.
 *
 * The invariant: a directory named RUN/step-XXXXXXXX that holds DONE is complete
 * and durable. Saves are built in RUN/step-XXXXXXXX.tmp; commit fsyncs every file
 * in it, then writes DONE (fsynced), then renames the directory and fsyncs RUN,
 * so after a crash RUN holds either the old state or the new complete one, plus
 * perhaps a .tmp that is never listed; the next run in RUN removes it
 * (ckpt_remove_stale), and so does the next save of that step.
 * Pruning unlinks DONE before deleting the rest, so a crash half way through a
 * prune leaves a directory that is no longer listed rather than a listed one
 * with files missing.
 */
#include "model/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define CKPT_PATH_MAX 4096
#define CKPT_DONE "DONE"

void ckpt_dir_name(char *buf, size_t cap, const char *run_dir, int64_t step) {
    snprintf(buf, cap, "%s/step-%08lld", run_dir, (long long)step);
}

static int final_dir_name(char *buf, size_t cap, const char *run_dir, int64_t step) {
    char name[32];
    snprintf(name, sizeof name, "step-%08lld", (long long)step);
    return path_join(buf, cap, run_dir, name);
}

int ckpt_begin(const char *run_dir, int64_t step, char *tmp_dir, size_t cap) {
    if (step < 0) return err_set("checkpoint step %lld is negative", (long long)step);
    char final_dir[CKPT_PATH_MAX];
    if (final_dir_name(final_dir, sizeof final_dir, run_dir, step) != 0) return -1;
    int len = snprintf(tmp_dir, cap, "%s.tmp", final_dir);
    if (len < 0 || (size_t)len >= cap)
        return err_set("checkpoint path %s.tmp does not fit in %zu bytes", final_dir, cap);
    if (mkdir_p(run_dir) != 0) return -1;
    if (rm_rf(tmp_dir) != 0) return -1;
    if (mkdir(tmp_dir, 0755) != 0)
        return err_set("cannot create checkpoint directory %s: %s%s", tmp_dir, strerror(errno),
                       errno == ENOSPC ? " (the disk is full: free some space and retry)" : "");
    return 0;
}

static int fsync_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set("cannot open %s to fsync it: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0)
        return err_set("cannot fsync %s: %s%s", path, strerror(e),
                       e == ENOSPC ? " (the disk is full: free some space and retry)" : "");
    return 0;
}

/* fsyncs every regular file directly inside dir. */
static int fsync_files_in(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return err_set("cannot open checkpoint directory %s: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char path[CKPT_PATH_MAX];
        struct stat st;
        if (path_join(path, sizeof path, dir, e->d_name) != 0) {
            rc = -1;
            break;
        }
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode)) rc = fsync_file(path);
    }
    closedir(d);
    return rc;
}

int ckpt_commit(const char *run_dir, const char *tmp_dir, int64_t step) {
    char final_dir[CKPT_PATH_MAX], done[CKPT_PATH_MAX];
    if (final_dir_name(final_dir, sizeof final_dir, run_dir, step) != 0) return -1;
    if (path_join(done, sizeof done, tmp_dir, CKPT_DONE) != 0) return -1;
    if (fsync_files_in(tmp_dir) != 0) return -1;
    char text[64];
    int len = snprintf(text, sizeof text, "step %lld\n", (long long)step);
    if (write_file_atomic(done, text, (size_t)len) != 0) return -1;
    if (fsync_dir(tmp_dir) != 0) return -1;
    if (rm_rf(final_dir) != 0) return -1;
    if (rename(tmp_dir, final_dir) != 0)
        return err_set("cannot rename checkpoint %s to %s: %s", tmp_dir, final_dir, strerror(errno));
    return fsync_dir(run_dir);
}

void ckpt_abort(const char *tmp_dir) {
    /* Called after a failure: keep the message that explains that failure. */
    char saved[4096];
    snprintf(saved, sizeof saved, "%s", err_msg());
    if (rm_rf(tmp_dir) != 0) fprintf(stderr, "retort: warning: %s\n", err_msg());
    err_set("%s", saved);
}

/* The step of a name that is exactly ckpt_dir_name's for that step followed
 * by suffix ("" or ".tmp"), or -1: step-5, step-00000005.bak and foreign
 * names are never taken. */
static int64_t step_of_name(const char *name, const char *suffix) {
    if (strncmp(name, "step-", 5) != 0) return -1;
    const char *digits = name + 5;
    size_t nd = strlen(digits), ns = strlen(suffix);
    if (nd < ns || strcmp(digits + nd - ns, suffix) != 0) return -1;
    nd -= ns;
    if (nd < 8 || nd > 18) return -1;
    int64_t step = 0;
    for (size_t i = 0; i < nd; i++) {
        if (digits[i] < '0' || digits[i] > '9') return -1;
        step = step * 10 + (digits[i] - '0');
    }
    char canonical[48];
    snprintf(canonical, sizeof canonical, "step-%08lld%s", (long long)step, suffix);
    return strcmp(canonical, name) == 0 ? step : -1;
}

/* Step of a complete checkpoint directory named `name` in run_dir, or -1.
 * The name must be exactly what ckpt_dir_name makes for that step, so
 * step-00000005.tmp, step-5 and foreign directories are never taken. */
static int64_t complete_step(const char *run_dir, const char *name) {
    int64_t step = step_of_name(name, "");
    if (step < 0) return -1;
    char done[CKPT_PATH_MAX];
    int len = snprintf(done, sizeof done, "%s/%s/%s", run_dir, name, CKPT_DONE);
    if (len < 0 || (size_t)len >= sizeof done) return -1;
    struct stat st;
    if (stat(done, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    return step;
}

static int cmp_step_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* All complete steps, newest first, in a malloc'd array (count in *n).
 * A missing run_dir gives 0 steps; an unreadable one -1 with error set. */
static int list_all(const char *run_dir, int64_t **steps_out, int *n_out) {
    *steps_out = NULL;
    *n_out = 0;
    DIR *d = opendir(run_dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return err_set("cannot read run directory %s: %s", run_dir, strerror(errno));
    }
    int n = 0, cap = 16;
    int64_t *steps = xmalloc((size_t)cap * sizeof(int64_t));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t step = complete_step(run_dir, e->d_name);
        if (step < 0) continue;
        if (n == cap) steps = xrealloc(steps, (size_t)(cap *= 2) * sizeof(int64_t));
        steps[n++] = step;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof(int64_t), cmp_step_desc);
    *steps_out = steps;
    *n_out = n;
    return 0;
}

int ckpt_list(const char *run_dir, int64_t *steps, int max) {
    int64_t *all;
    int n;
    if (list_all(run_dir, &all, &n) != 0) return -1;
    if (n > max) n = max > 0 ? max : 0;
    if (n > 0) memcpy(steps, all, (size_t)n * sizeof(int64_t));
    free(all);
    return n;
}

int ckpt_remove_stale(const char *run_dir, void (*removed)(const char *dir, void *ctx),
                      void *ctx) {
    DIR *d = opendir(run_dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return err_set("cannot read run directory %s: %s", run_dir, strerror(errno));
    }
    int n = 0, rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char path[CKPT_PATH_MAX];
        struct stat st;
        if (step_of_name(e->d_name, ".tmp") < 0) continue;
        if (path_join(path, sizeof path, run_dir, e->d_name) != 0) rc = -1;
        else if (lstat(path, &st) != 0 || !S_ISDIR(st.st_mode)) continue; /* not one of ours */
        else if ((rc = rm_rf(path)) == 0) {
            n++;
            if (removed) removed(path, ctx);
        }
    }
    closedir(d);
    return rc == 0 ? n : -1;
}

int ckpt_prune(const char *run_dir, int keep) {
    if (keep <= 0) return 0;
    int64_t *all;
    int n;
    if (list_all(run_dir, &all, &n) != 0) return -1;
    int rc = 0;
    for (int i = keep; i < n && rc == 0; i++) {
        char dir[CKPT_PATH_MAX], done[CKPT_PATH_MAX];
        if (final_dir_name(dir, sizeof dir, run_dir, all[i]) != 0 ||
            path_join(done, sizeof done, dir, CKPT_DONE) != 0) {
            rc = -1;
            break;
        }
        if (unlink(done) != 0 && errno != ENOENT)
            rc = err_set("cannot remove %s: %s", done, strerror(errno));
        else
            rc = rm_rf(dir);
    }
    free(all);
    if (rc == 0 && n > keep) rc = fsync_dir(run_dir);
    return rc;
}
