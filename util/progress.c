/* util/progress.c — progress lines on standard error (see progress.h).
 *
 * The line is built in one buffer and written with one fwrite, so a line is
 * never interleaved with itself; on a terminal the previous line is cleared
 * with the erase-to-end-of-line sequence, which every terminal emulator
 * understands. Nothing here fails a command: a stream error only stops the
 * reporting. */
#include "progress.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define TTY_REDRAW_S 0.1
#define PLAIN_DEFAULT_S 10.0

struct Progress {
    char what[64];
    char unit[32];
    int64_t total, done;
    FILE *out;
    ProgressMode mode;
    double (*clock)(void);
    double interval_s; /* plain lines */
    double t0, last_line;
    int line_open; /* a tty line is on screen without its newline */
    char detail[160];
};

void progress_detail(Progress *p, const char *fmt, ...) {
    if (!p) return;
    p->detail[0] = '\0';
    if (!fmt || !*fmt) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->detail, sizeof p->detail, fmt, ap);
    va_end(ap);
}

/* A count of the unit: bytes in kB/MB/GB (decimal, as du -h --si), else the number. */
static void format_count(const Progress *p, double v, char out[32]) {
    if (strcmp(p->unit, "bytes")) {
        snprintf(out, 32, "%.0f", v);
        return;
    }
    if (v < 1e3) snprintf(out, 32, "%.0f B", v);
    else if (v < 1e6) snprintf(out, 32, "%.1f kB", v / 1e3);
    else if (v < 1e9) snprintf(out, 32, "%.1f MB", v / 1e6);
    else snprintf(out, 32, "%.2f GB", v / 1e9);
}

void progress_format_duration(double s, char out[32]) {
    if (!(s >= 0) || s > 1e9) {
        snprintf(out, 32, "?");
    } else if (s < 10) {
        snprintf(out, 32, "%.1f s", s);
    } else if (s < 60) {
        snprintf(out, 32, "%.0f s", s);
    } else if (s < 3600) {
        long t = lround(s);
        snprintf(out, 32, "%ld min %02ld s", t / 60, t % 60);
    } else {
        long m = lround(s / 60);
        snprintf(out, 32, "%ld h %02ld min", m / 60, m % 60);
    }
}

static void format_rate(double rate, char out[32]) {
    if (rate >= 100) snprintf(out, 32, "%.0f", rate);
    else if (rate >= 10) snprintf(out, 32, "%.1f", rate);
    else snprintf(out, 32, "%.2f", rate);
}

static ProgressMode mode_from_env(int quiet) {
    if (quiet) return PROGRESS_OFF;
    const char *e = getenv("RETORT_PROGRESS");
    if (e && !strcmp(e, "off")) return PROGRESS_OFF;
    if (e && !strcmp(e, "plain")) return PROGRESS_PLAIN;
    if (e && !strcmp(e, "tty")) return PROGRESS_TTY;
    return isatty(fileno(stderr)) ? PROGRESS_TTY : PROGRESS_PLAIN;
}

static double interval_from_env(void) {
    const char *e = getenv("RETORT_PROGRESS_SECONDS");
    if (!e || !*e) return PLAIN_DEFAULT_S;
    char *end;
    double v = strtod(e, &end);
    return (*end || !(v >= 0) || !isfinite(v)) ? PLAIN_DEFAULT_S : v;
}

Progress *progress_open_at(const char *what, const char *unit, int64_t total, FILE *out,
                           ProgressMode mode, double (*clock)(void), double interval_s) {
    Progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->what, sizeof p->what, "%s", what ? what : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "items");
    p->total = total > 0 ? total : 0;
    p->out = out;
    p->mode = out ? mode : PROGRESS_OFF;
    p->clock = clock ? clock : now_seconds;
    p->interval_s = interval_s;
    p->t0 = p->last_line = p->clock();
    return p;
}

Progress *progress_open(const char *what, const char *unit, int64_t total, int quiet) {
    return progress_open_at(what, unit, total, stderr, mode_from_env(quiet), NULL, interval_from_env());
}

/* "what: done/total unit (pct%), detail, rate unit/s, ETA t" into buf; the
 * final line "what: done/total unit, detail, in t, rate unit/s". */
static void describe(const Progress *p, double now, int final, char *buf, size_t cap) {
    double elapsed = now - p->t0;
    double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    int bytes = !strcmp(p->unit, "bytes");
    char done[32], total[32], r[32], d[32];
    format_count(p, (double)p->done, done);
    format_count(p, (double)p->total, total);
    if (bytes) format_count(p, rate, r);
    else format_rate(rate, r);
    const char *unit = bytes ? "" : p->unit;  /* "12.0 MB", not "12.0 MB bytes" */
    const char *sp = bytes ? "" : " ";
    size_t n = 0;
#define PUT(...)                                              \
    do {                                                      \
        int k_ = snprintf(buf + n, cap - n, __VA_ARGS__);     \
        if (k_ < 0 || (size_t)k_ >= cap - n) return;          \
        n += (size_t)k_;                                      \
    } while (0)
    if (p->total) PUT("%s: %s/%s%s%s", p->what, done, total, sp, unit);
    else PUT("%s: %s%s%s", p->what, done, sp, unit);
    if (!final && p->total) PUT(" (%d%%)", (int)(100.0 * (double)p->done / (double)p->total));
    if (p->detail[0]) PUT(", %s", p->detail);
    if (final) {
        progress_format_duration(elapsed, d);
        PUT("%s in %s", p->detail[0] ? "," : "", d);
        if (elapsed > 0) PUT(", %s%s%s/s", r, sp, bytes ? "" : p->unit);
        return;
    }
    if (elapsed > 0 && p->done > 0) {
        PUT(", %s%s%s/s", r, sp, bytes ? "" : p->unit);
        if (p->total && p->done < p->total) {
            progress_format_duration((double)(p->total - p->done) / rate, d);
            PUT(", ETA %s", d);
        }
    }
#undef PUT
}

static void emit(Progress *p, const char *line, int newline) {
    if (p->mode == PROGRESS_TTY) {
        fprintf(p->out, "\r%s\033[K%s", line, newline ? "\n" : "");
        p->line_open = !newline;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
}

void progress_add(Progress *p, int64_t n) {
    if (!p) return;
    p->done += n;
    if (p->mode == PROGRESS_OFF) return;
    double now = p->clock();
    double every = p->mode == PROGRESS_TTY ? TTY_REDRAW_S : p->interval_s;
    if (now - p->last_line < every) return;
    if (p->mode == PROGRESS_PLAIN && p->total && p->done >= p->total) return; /* the final line says it */
    char line[256];
    describe(p, now, 0, line, sizeof line);
    emit(p, line, 0);
    p->last_line = now;
}

int64_t progress_done(const Progress *p) { return p ? p->done : 0; }

void progress_close(Progress *p, int ok) {
    if (!p) return;
    if (p->mode != PROGRESS_OFF) {
        if (ok) {
            char line[256];
            describe(p, p->clock(), 1, line, sizeof line);
            emit(p, line, 1);
        } else if (p->line_open) {
            fputc('\n', p->out);
            fflush(p->out);
        }
    }
    free(p);
}

void progress_erase(Progress *p) {
    if (!p) return;
    if (p->line_open) {
        fputs("\r\033[K", p->out);
        fflush(p->out);
    }
    free(p);
}

int64_t progress_count_lines(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[1 << 16];
    int64_t n = 0;
    int blank = 1; /* the current line has only white space so far */
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < got; i++) {
            char c = buf[i];
            if (c == '\n') {
                n += !blank;
                blank = 1;
            } else if (c != ' ' && c != '\t' && c != '\r') {
                blank = 0;
            }
        }
    n += !blank; /* a last line without its newline */
    fclose(f);
    return n;
}
