/* eval/plot.c — metrics.jsonl to SVG (see plot.h). */
#include "eval/plot.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

typedef struct {
    double step, v;
    long order;
} Pt;

typedef struct {
    char *name;
    int val; /* from a validation line */
} Key;

typedef struct {
    char *buf;
    size_t len, cap;
} Buf;

static void bprintf(Buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)(n > 0 ? n : 0) + 256;
        b->buf = xrealloc(b->buf, b->cap);
    }
}

/* One run's lines, parsed. */
typedef struct {
    json_t **lines;
    int n;
} Run;

static int load_run(const char *dir, Run *r) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return err_set("%s: no metrics.jsonl (%s); give the out_dir of a training run", dir,
                       path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long no = 0;
    r->lines = NULL;
    r->n = 0;
    while ((len = getline(&line, &cap, f)) != -1) {
        no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        if (!j || !json_is_object(j)) {
            json_decref(j);
            free(line);
            fclose(f);
            return err_set("%s:%ld: not a JSON object; metrics.jsonl holds one per line", path,
                           no);
        }
        if (!json_is_number(json_object_get(j, "step"))) { /* not a metrics line */
            json_decref(j);
            continue;
        }
        r->lines = xrealloc(r->lines, sizeof *r->lines * (size_t)(r->n + 1));
        r->lines[r->n++] = j;
    }
    free(line);
    fclose(f);
    return 0;
}

static int is_val_line(json_t *j) { return json_object_get(j, "val_loss") != NULL; }

static int cmp_pt(const void *a, const void *b) {
    const Pt *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* The finite points of metric in run r, sorted by step; their count. */
static int points(const Run *r, const char *metric, Pt **out) {
    Pt *p = xmalloc(sizeof *p * (size_t)(r->n + 1));
    int n = 0;
    for (int i = 0; i < r->n; i++) {
        json_t *v = json_object_get(r->lines[i], metric);
        if (!v || !json_is_number(v)) continue; /* absent or null */
        double x = json_number_value(json_object_get(r->lines[i], "step"));
        double y = json_number_value(v);
        if (!isfinite(x) || !isfinite(y)) continue;
        p[n].step = x;
        p[n].v = y;
        p[n].order = i;
        n++;
    }
    qsort(p, (size_t)n, sizeof *p, cmp_pt);
    *out = p;
    return n;
}

static int find_key(const Key *k, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(k[i].name, name)) return i;
    return -1;
}

/* Ticks: a "nice" step over [lo, hi]. */
static double nice_step(double span) {
    double raw = span / 5.0;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

static void xml_text(Buf *b, const char *s) {
    for (; *s; s++) {
        if (*s == '<') bprintf(b, "&lt;");
        else if (*s == '>') bprintf(b, "&gt;");
        else if (*s == '&') bprintf(b, "&amp;");
        else if (*s == '"') bprintf(b, "&quot;");
        else bprintf(b, "%c", *s);
    }
}

static const char *const COLOURS[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

#define PW 640.0 /* panel */
#define PH 300.0
#define ML 70.0 /* margins inside a panel */
#define MR 20.0
#define MT 30.0
#define MB 45.0

/* One panel; every panel shares the step axis [xmin, xmax] of all the points
 * plotted, so a validation point sits above the training step it followed. */
static void panel(Buf *b, double y0, const char *metric, int val, Run *runs, int n_runs,
                  Pt **pts, const int *np, double xmin, double xmax) {
    double ymin = INFINITY, ymax = -INFINITY;
    for (int r = 0; r < n_runs; r++)
        for (int i = 0; i < np[r]; i++)
            ymin = fmin(ymin, pts[r][i].v), ymax = fmax(ymax, pts[r][i].v);
    (void)runs;
    if (!(xmax > xmin)) xmin -= 0.5, xmax += 0.5;
    if (!(ymax > ymin)) {
        double d = fabs(ymin) > 0 ? fabs(ymin) * 0.05 : 0.5;
        ymin -= d, ymax += d;
    } else { /* a margin, so no point or line lies on the frame */
        double d = 0.04 * (ymax - ymin);
        ymin -= d, ymax += d;
    }
    double x0p = ML, x1p = PW - MR, y0p = y0 + MT, y1p = y0 + PH - MB;
#define SX(x) (x0p + ((x) - xmin) / (xmax - xmin) * (x1p - x0p))
#define SY(y) (y1p - ((y) - ymin) / (ymax - ymin) * (y1p - y0p))
    bprintf(b, "<g class=\"panel\" id=\"panel-");
    xml_text(b, metric);
    bprintf(b, "\">\n<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" text-anchor=\"middle\">",
            (x0p + x1p) / 2, y0 + 18);
    xml_text(b, metric);
    bprintf(b, "</text>\n");
    bprintf(b,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#000\"/>\n",
            x0p, y0p, x1p - x0p, y1p - y0p);
    double sx = nice_step(xmax - xmin), sy = nice_step(ymax - ymin);
    for (double t = ceil(xmin / sx) * sx; t <= xmax + sx * 1e-9; t += sx) {
        double px = SX(t);
        bprintf(b,
                "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#000\"/>"
                "<text x=\"%.2f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
                px, y1p, px, y1p + 5, px, y1p + 18, fabs(t) < sx * 1e-9 ? 0.0 : t);
    }
    for (double t = ceil(ymin / sy) * sy; t <= ymax + sy * 1e-9; t += sy) {
        double py = SY(t);
        bprintf(b,
                "<line x1=\"%.1f\" y1=\"%.2f\" x2=\"%.1f\" y2=\"%.2f\" stroke=\"#000\"/>"
                "<text x=\"%.1f\" y=\"%.2f\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n",
                x0p - 5, py, x0p, py, x0p - 8, py + 4, fabs(t) < sy * 1e-9 ? 0.0 : t);
    }
    bprintf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">step</text>\n",
            (x0p + x1p) / 2, y1p + 36);
    bprintf(b,
            "<text x=\"14\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 14 %.1f)\">",
            (y0p + y1p) / 2, (y0p + y1p) / 2);
    xml_text(b, metric);
    bprintf(b, "</text>\n");
    for (int r = 0; r < n_runs; r++) {
        const char *c = COLOURS[r % (sizeof COLOURS / sizeof *COLOURS)];
        if (np[r] == 0) continue;
        if (val) {
            for (int i = 0; i < np[r]; i++)
                bprintf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                        SX(pts[r][i].step), SY(pts[r][i].v), c);
        } else {
            bprintf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", c);
            for (int i = 0; i < np[r]; i++)
                bprintf(b, "%s%.2f,%.2f", i ? " " : "", SX(pts[r][i].step), SY(pts[r][i].v));
            bprintf(b, "\"/>\n");
        }
    }
#undef SX
#undef SY
    bprintf(b, "</g>\n");
}

/* A run's name in the legend: the last `parts` components of its directory
 * (trailing slashes ignored). */
static const char *tail_components(const char *dir, int parts) {
    const char *end = dir + strlen(dir);
    while (end > dir + 1 && end[-1] == '/') end--;
    const char *p = end;
    for (int k = 0; k < parts; k++) {
        if (p > dir) p--; /* past the slash that ended the previous component */
        while (p > dir && p[-1] != '/') p--;
        if (p == dir) break;
    }
    return p;
}

/* The legend's labels: the shortest trailing parts of the run directories that
 * tell them apart ("gold-s1", "seqkd-s1"; "a/run" and "b/run" when the last
 * components are the same). */
static char **legend_labels(const char *const *runs, int n_runs) {
    char **labels = xcalloc((size_t)n_runs, sizeof *labels);
    for (int parts = 1;; parts++) {
        int distinct = 1, whole = 1;
        for (int r = 0; r < n_runs; r++) {
            free(labels[r]);
            const char *t = tail_components(runs[r], parts);
            size_t n = strlen(t);
            while (n > 1 && t[n - 1] == '/') n--;
            labels[r] = xmalloc(n + 1);
            memcpy(labels[r], t, n);
            labels[r][n] = '\0';
            whole &= t == runs[r];
        }
        for (int r = 0; r < n_runs && distinct; r++)
            for (int q = 0; q < r && distinct; q++) distinct = strcmp(labels[r], labels[q]) != 0;
        if (distinct || whole) return labels;
    }
}

int plot_runs_svg(const char *const *runs, int n_runs, const char *const *metrics,
                  int n_metrics, const char *out) {
    int rc = -1;
    Run *rs = xcalloc((size_t)n_runs, sizeof *rs);
    Key *keys = NULL;
    int n_keys = 0;
    const char **chosen = NULL;
    int n_chosen = 0;
    Buf b = {0};
    for (int r = 0; r < n_runs; r++) {
        if (load_run(runs[r], &rs[r]) != 0) goto done;
        for (int i = 0; i < rs[r].n; i++) {
            const char *k;
            json_t *v;
            json_object_foreach(rs[r].lines[i], k, v) {
                if (!strcmp(k, "step") || !(json_is_number(v) || json_is_null(v))) continue;
                int at = find_key(keys, n_keys, k);
                if (at < 0) {
                    keys = xrealloc(keys, sizeof *keys * (size_t)(n_keys + 1));
                    keys[n_keys].name = xstrdup(k);
                    keys[n_keys].val = is_val_line(rs[r].lines[i]);
                    n_keys++;
                }
            }
        }
    }
    chosen = xmalloc(sizeof *chosen * (size_t)(n_metrics + 2));
    if (n_metrics > 0) {
        for (int m = 0; m < n_metrics; m++) {
            if (find_key(keys, n_keys, metrics[m]) < 0) {
                Buf avail = {0};
                for (int i = 0; i < n_keys; i++)
                    bprintf(&avail, "%s%s", i ? ", " : "", keys[i].name);
                err_set("unknown metric '%s'; the runs have: %s", metrics[m],
                        n_keys ? avail.buf : "(none)");
                free(avail.buf);
                goto done;
            }
            chosen[n_chosen++] = metrics[m];
        }
    } else {
        chosen[n_chosen++] = "loss";
        if (find_key(keys, n_keys, "val_loss") >= 0) chosen[n_chosen++] = "val_loss";
    }

    Pt **pts = xcalloc((size_t)n_runs * (size_t)n_chosen, sizeof *pts);
    int *np = xcalloc((size_t)n_runs * (size_t)n_chosen, sizeof *np);
    int any = 0;
    for (int m = 0; m < n_chosen; m++)
        for (int r = 0; r < n_runs; r++)
            any += np[m * n_runs + r] = points(&rs[r], chosen[m], &pts[m * n_runs + r]);
    if (!any) {
        err_set("nothing to plot: no run has a number for %s%s", chosen[0],
                n_chosen > 1 ? " or the other metrics asked for" : "");
    } else {
        double legend_h = 20.0 * n_runs + 10;
        double H = PH * n_chosen + legend_h;
        bprintf(&b,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
                "<rect width=\"100%%\" height=\"100%%\" fill=\"#fff\"/>\n",
                PW, H, PW, H);
        double xmin = INFINITY, xmax = -INFINITY;
        for (int i = 0; i < n_runs * n_chosen; i++)
            for (int j = 0; j < np[i]; j++)
                xmin = fmin(xmin, pts[i][j].step), xmax = fmax(xmax, pts[i][j].step);
        for (int m = 0; m < n_chosen; m++) {
            int k = find_key(keys, n_keys, chosen[m]);
            panel(&b, PH * m, chosen[m], k >= 0 ? keys[k].val : 0, rs, n_runs, pts + m * n_runs,
                  np + m * n_runs, xmin, xmax);
        }
        bprintf(&b, "<g class=\"legend\">\n");
        char **labels = legend_labels(runs, n_runs);
        for (int r = 0; r < n_runs; r++) {
            double y = PH * n_chosen + 15 + 20.0 * r;
            const char *c = COLOURS[r % (sizeof COLOURS / sizeof *COLOURS)];
            bprintf(&b,
                    "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"%s\" "
                    "stroke-width=\"3\"/><text x=\"%.0f\" y=\"%.1f\" font-size=\"12\">",
                    ML, y, ML + 24, y, c, ML + 30, y + 4);
            xml_text(&b, labels[r]);
            bprintf(&b, "</text>\n");
            free(labels[r]);
        }
        free(labels);
        bprintf(&b, "</g>\n</svg>\n");
        rc = write_file_atomic(out, b.buf, b.len);
    }
    for (int i = 0; i < n_runs * n_chosen; i++) free(pts[i]);
    free(pts);
    free(np);
done:
    for (int r = 0; r < n_runs; r++) {
        for (int i = 0; i < rs[r].n; i++) json_decref(rs[r].lines[i]);
        free(rs[r].lines);
    }
    free(rs);
    for (int i = 0; i < n_keys; i++) free(keys[i].name);
    free(keys);
    free(chosen);
    free(b.buf);
    return rc;
}
