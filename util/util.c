/* util/util.c — see util.h. */
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char err_buf[4096];

int err_set(const char *fmt, ...) {
    /* through a copy, so err_set("...: %s", err_msg()) can wrap the last error */
    char tmp[sizeof err_buf];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(err_buf, tmp, sizeof err_buf);
    return -1;
}

const char *err_msg(void) { return err_buf[0] ? err_buf : "unknown error"; }
void err_clear(void) { err_buf[0] = '\0'; }

static void oom(size_t n) {
    fprintf(stderr, "retort: out of memory allocating %zu bytes\n", n);
    exit(1);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) oom(n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) oom(count * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) oom(n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

/* ---- rng ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(Rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_u64(Rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(Rng *r) { return (double)(rng_u64(r) >> 11) * 0x1.0p-53; }

double rng_normal(Rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t rng_below(Rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_u64(r); while (x >= limit);
    return x % n;
}

/* ---- files ---- */

char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        err_set("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (cap - n - 1 == 0) buf = xrealloc(buf, cap *= 2);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        err_set("error reading %s", path);
        return NULL;
    }
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* "512 bytes", "3.2 KiB", "1.8 MiB", "4.0 GiB" */
static const char *human_bytes(uint64_t n, char *buf, size_t cap) {
    static const char *const unit[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(buf, cap, "%llu bytes", (unsigned long long)n);
        return buf;
    }
    double v = (double)n / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 3) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", v, unit[u]);
    return buf;
}

/* The directory part of path ("." when it has none). */
static void parent_dir(const char *path, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, cap, ".");
    else *(slash == dir ? slash + 1 : slash) = '\0';
}

int err_write(const char *path, const char *tmp, int errnum, uint64_t needed, int at_least) {
    struct stat st;
    int have_tmp = stat(tmp, &st) == 0;
    uint64_t written = have_tmp ? (uint64_t)st.st_size : 0;
    uint64_t held = have_tmp ? (uint64_t)st.st_blocks * 512 : 0; /* freed with tmp */
    if (errnum != ENOSPC && errnum != EDQUOT && errnum != EFBIG)
        return err_set("cannot write %s (through %s): %s; %s is left as it was", path, tmp,
                       strerror(errnum), path);
    if (needed > 0 && needed < written) needed = written;
    char dir[4096], got[32], need[32], room[32], limit[32], stop[96], free_note[4200] = "";
    parent_dir(path, dir, sizeof dir);
    struct statvfs fs;
    if (statvfs(dir, &fs) == 0)
        snprintf(free_note, sizeof free_note, ", and the directory %s has %s free", dir,
                 human_bytes((uint64_t)fs.f_bavail * fs.f_frsize + held, room, sizeof room));
    if (errnum == EFBIG) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            snprintf(stop, sizeof stop, "the file-size limit (ulimit -f) of %s",
                     human_bytes((uint64_t)rl.rlim_cur, limit, sizeof limit));
        else
            snprintf(stop, sizeof stop, "the largest file the file system allows");
    } else {
        snprintf(stop, sizeof stop, "a full disk");
    }
    char need_note[80] = "; the file needs more disk space than that";
    if (needed > 0)
        snprintf(need_note, sizeof need_note, "; the file needs %s %s of disk space",
                 at_least ? "at least" : "about", human_bytes(needed, need, sizeof need));
    return err_set("cannot write %s: %s: %s stopped at %s, at %s%s%s. %s is left as it was; %s",
                   path, strerror(errnum), tmp, human_bytes(written, got, sizeof got), stop,
                   need_note, free_note, path,
                   errnum == EFBIG ? "raise the limit or write the file elsewhere"
                                   : "free space there or write the file elsewhere");
}

int write_file_atomic(const char *path, const void *data, size_t len) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return err_set("path too long: %.200s...", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return err_set("cannot create %s: %s", tmp, strerror(errno));
    if (write_all(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        err_write(path, tmp, e, len, 0);
        unlink(tmp);
        return -1;
    }
    if (close(fd) != 0) {
        int e = errno;
        err_write(path, tmp, e, len, 0);
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return err_set("cannot rename %s to %s: %s; %s is left as it was", tmp, path,
                       strerror(e), path);
    }
    return fsync_parent(path);
}

int file_commit(FILE *f, const char *tmp, const char *path) {
    long end = ftell(f);
    uint64_t size = end > 0 ? (uint64_t)end : 0;
    int e = 0;
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0) e = errno ? errno : EIO;
    if (fclose(f) != 0 && e == 0) e = errno;
    if (e != 0) {
        err_write(path, tmp, e, size, 0);
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return err_set("cannot rename %s to %s: %s; %s is left as it was", tmp, path,
                       strerror(e), path);
    }
    return fsync_parent(path);
}

void file_discard(FILE *f, const char *tmp) {
    if (f) fclose(f);
    unlink(tmp);
}

int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return err_set("cannot open directory %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? 0 : err_set("cannot fsync directory %s: %s", dir, strerror(errno));
}

int fsync_parent(const char *path) {
    char dir[4096];
    parent_dir(path, dir, sizeof dir);
    return fsync_dir(dir);
}

int path_join(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return err_set("path %s/%s is too long (more than %zu bytes)", dir, name, cap - 1);
    return 0;
}

int mkdir_p(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return err_set("cannot create directory %s: %s", buf, strerror(errno));
            *p = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return err_set("cannot create directory %s: %s", buf, strerror(errno));
    return 0;
}

int rm_rf(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : err_set("cannot stat %s", path);
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) return err_set("cannot open directory %s: %s", path, strerror(errno));
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char child[4096];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            if (rm_rf(child) != 0) {
                closedir(d);
                return -1;
            }
        }
        closedir(d);
        if (rmdir(path) != 0) return err_set("cannot remove %s: %s", path, strerror(errno));
    } else if (unlink(path) != 0) {
        return err_set("cannot remove %s: %s", path, strerror(errno));
    }
    return 0;
}

int path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
