/* train/best.c — the best checkpoint of a run (see best.h): which metric and
 * direction, when a value improves, its record in trainer.json across a
 * resume, and the atomic swap of RUN/best. */
/* renameat2 needs _GNU_SOURCE, which the Makefile defines */
#include "train/best.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#define BEST_DIR "best"
#define BEST_TMP "best.tmp"
#define BEST_JSON "best.json"
#define PATH_CAP 4096

int best_init(BestTracker *b, const Config *cfg, const char *const *gen_names,
              const int *gen_higher, int n_gen) {
    memset(b, 0, sizeof *b);
    const char *m = cfg->eval.best_metric;
    if (!m[0]) return 0;
    int higher = 0;
    if (!strcmp(m, "val_loss")) {
        higher = 0;
    } else if (!strncmp(m, "gen/", 4)) {
        int found = -1;
        char names[1024] = "";
        size_t len = 0;
        for (int i = 0; i < n_gen; i++) {
            if (!strcmp(m + 4, gen_names[i])) found = i;
            if (len < sizeof names)
                len += (size_t)snprintf(names + len, sizeof names - len, "%sgen/%s", i ? ", " : "",
                                        gen_names[i]);
        }
        if (found < 0)
            return err_set("eval.best_metric '%s' is not measured by generation-based evaluation "
                           "with this config; it reports %s%s", m, n_gen ? names : "nothing",
                           !strcmp(m, "gen/accuracy") ? " (gen/accuracy needs "
                                                        "eval.generate_answer)" : "");
        higher = gen_higher[found];
    } else {
        return err_set("eval.best_metric '%s' is neither val_loss nor a gen/<metric>", m);
    }
    if (!strcmp(cfg->eval.best_mode, "max")) higher = 1;
    else if (!strcmp(cfg->eval.best_mode, "min")) higher = 0;
    b->on = 1;
    snprintf(b->metric, sizeof b->metric, "%s", m);
    b->higher = higher;
    return 0;
}

int best_improves(const BestTracker *b, double value) {
    if (!b->on || !isfinite(value)) return 0;
    if (!b->have) return 1;
    return b->higher ? value > b->value : value < b->value;
}

json_t *best_record(const BestTracker *b) {
    if (!b->on || !b->have) return NULL;
    json_t *r = json_object();
    json_object_set_new(r, "metric", json_string(b->metric));
    json_object_set_new(r, "mode", json_string(b->higher ? "max" : "min"));
    json_object_set_new(r, "value", json_real(b->value));
    json_object_set_new(r, "step", json_integer(b->step));
    return r;
}

/* A record that is about b's metric and direction: its value and step. */
static int record_matches(const BestTracker *b, const json_t *r, double *value, int *step) {
    if (!json_is_object(r)) return 0;
    const char *metric = json_string_value(json_object_get(r, "metric"));
    const char *mode = json_string_value(json_object_get(r, "mode"));
    const json_t *v = json_object_get(r, "value"), *s = json_object_get(r, "step");
    if (!metric || !mode || !json_is_number(v) || !json_is_integer(s)) return 0;
    if (strcmp(metric, b->metric) != 0 || strcmp(mode, b->higher ? "max" : "min") != 0) return 0;
    *value = json_number_value(v);
    *step = (int)json_integer_value(s);
    return isfinite(*value);
}

int best_resume(BestTracker *b, const char *run_dir, int step, const json_t *record, int quiet) {
    if (!b->on) return 0;
    char dir[PATH_CAP], meta[PATH_CAP];
    if (path_join(dir, sizeof dir, run_dir, BEST_DIR) != 0 ||
        path_join(meta, sizeof meta, dir, BEST_JSON) != 0)
        return -1;
    json_error_t jerr;
    json_t *on_disk = path_exists(meta) ? json_load_file(meta, 0, &jerr) : NULL;
    int disk_step = -1;
    if (on_disk && json_is_integer(json_object_get(on_disk, "step")))
        disk_step = (int)json_integer_value(json_object_get(on_disk, "step"));
    double value;
    int at;
    if (record_matches(b, record, &value, &at) ||
        (disk_step >= 0 && disk_step <= step && record_matches(b, on_disk, &value, &at))) {
        b->have = 1;
        b->value = value;
        b->step = at;
        if (!quiet)
            printf("resume: best %s so far %.9g at step %d\n", b->metric, value, at);
    }
    json_decref(on_disk);
    if (disk_step > step) {
        if (rm_rf(dir) != 0) return -1;
        if (!quiet)
            printf("resume: removed %s (step %d): it is newer than step %d, where the run "
                   "continues\n", dir, disk_step, step);
    }
    return 0;
}

int best_begin(const char *run_dir, char *tmp_dir, size_t cap) {
    if (path_join(tmp_dir, cap, run_dir, BEST_TMP) != 0) return -1;
    if (rm_rf(tmp_dir) != 0) return -1;
    if (mkdir(tmp_dir, 0755) != 0)
        return err_set("cannot create %s: %s%s", tmp_dir, strerror(errno),
                       errno == ENOSPC ? " (the disk is full: free some space and retry)" : "");
    return 0;
}

/* fsyncs every regular file directly inside dir, then dir. */
static int fsync_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return err_set("cannot open %s: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char path[PATH_CAP];
        struct stat st;
        if (path_join(path, sizeof path, dir, e->d_name) != 0) {
            rc = -1;
            break;
        }
        if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        int fd = open(path, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0)
            rc = err_set("cannot fsync %s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
    }
    closedir(d);
    return rc == 0 ? fsync_dir(dir) : rc;
}

static int write_meta(const BestTracker *b, const char *tmp_dir, double value, int step) {
    BestTracker now = *b;
    now.have = 1;
    now.value = value;
    now.step = step;
    json_t *r = best_record(&now);
    char *text = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(r);
    char path[PATH_CAP];
    int rc = path_join(path, sizeof path, tmp_dir, BEST_JSON);
    if (rc == 0) rc = write_file_atomic(path, text, strlen(text));
    free(text);
    char done[64];
    int len = snprintf(done, sizeof done, "step %d\n", step);
    if (rc == 0) rc = path_join(path, sizeof path, tmp_dir, "DONE");
    if (rc == 0) rc = write_file_atomic(path, done, (size_t)len);
    return rc;
}

int best_commit(BestTracker *b, const char *run_dir, const char *tmp_dir, double value, int step) {
    char dir[PATH_CAP];
    int rc = path_join(dir, sizeof dir, run_dir, BEST_DIR);
    if (rc == 0) rc = write_meta(b, tmp_dir, value, step);
    if (rc == 0) rc = fsync_tree(tmp_dir);
    if (rc == 0) {
        if (path_exists(dir)) {
            /* one atomic step: best/ is the old directory or the new one */
            if (renameat2(AT_FDCWD, tmp_dir, AT_FDCWD, dir, RENAME_EXCHANGE) != 0)
                rc = err_set("cannot swap %s into %s: %s", tmp_dir, dir, strerror(errno));
        } else if (rename(tmp_dir, dir) != 0) {
            rc = err_set("cannot rename %s to %s: %s", tmp_dir, dir, strerror(errno));
        }
    }
    if (rc == 0) rc = fsync_dir(run_dir);
    if (rc != 0) { /* keep the message that explains the failure */
        char saved[4096];
        snprintf(saved, sizeof saved, "%s", err_msg());
        if (rm_rf(tmp_dir) != 0) fprintf(stderr, "retort: warning: %s\n", err_msg());
        err_set("%s", saved);
        return -1;
    }
    /* after the swap it holds the previous best; the new one is in place */
    if (rm_rf(tmp_dir) != 0) fprintf(stderr, "retort: warning: %s\n", err_msg());
    b->have = 1;
    b->value = value;
    b->step = step;
    return 0;
}
