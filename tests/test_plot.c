/* tests/test_plot.c — `retort plot`: two runs' metrics.jsonl drawn as an SVG
 * (one polyline per run per training metric with a point per finite value,
 * x increasing with step, validation values as circles, the legend), and its
 * errors: no metrics.jsonl, an unknown metric, nothing to plot. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "tests/testutil_cli.h"

static char dir[64];

static void setup_runs(void) {
    strcpy(dir, "/tmp/retort_plot_XXXXXX");
    cr_assert(mkdtemp(dir));
    char p[256];
    snprintf(p, sizeof p, "mkdir -p %s/runA %s/runB %s/empty %s/nulls", dir, dir, dir, dir);
    cr_assert_eq(system(p), 0);
    snprintf(p, sizeof p, "%s/runA/metrics.jsonl", dir);
    write_text(p, "{\"step\": 1, \"loss\": 3.5, \"lr\": 0.001}\n"
                  "{\"step\": 2, \"loss\": 3.1, \"lr\": 0.001}\n"
                  "{\"step\": 3, \"loss\": null, \"lr\": 0.001}\n"
                  "{\"step\": 4, \"loss\": 2.4, \"lr\": 0.0005}\n"
                  "{\"step\": 4, \"val_loss\": 2.6, \"eval_acc\": 0.5}\n"
                  "{\"step\": 5, \"loss\": 2.0, \"lr\": 0.0001}\n");
    snprintf(p, sizeof p, "%s/runB/metrics.jsonl", dir);
    write_text(p, "{\"step\": 10, \"loss\": 4.0, \"lr\": 0.002}\n"
                  "{\"step\": 20, \"loss\": 3.0, \"lr\": 0.002}\n"
                  "{\"step\": 20, \"val_loss\": 3.2, \"eval_acc\": 0.25}\n"
                  "{\"step\": 30, \"loss\": 2.5, \"lr\": 0.001}\n");
    snprintf(p, sizeof p, "%s/nulls/metrics.jsonl", dir);
    write_text(p, "{\"step\": 1, \"loss\": null}\n{\"step\": 2, \"loss\": null}\n");
}

TestSuite(plot, .init = setup_runs);

static char *slurp(const char *path) {
    size_t n;
    char *s = read_file(path, &n);
    cr_assert(s, "%s: %s", path, err_msg());
    return s;
}

/* The polylines of svg in order: each one's point count, checking x rises. */
static int polylines(const char *svg, int *counts, int max) {
    int n = 0;
    for (const char *s = strstr(svg, "<polyline"); s; s = strstr(s + 1, "<polyline")) {
        const char *pts = strstr(s, "points=\"");
        cr_assert(pts);
        pts += 8;
        int k = 0;
        double prev = -1e300;
        while (*pts != '"') {
            char *end;
            double x = strtod(pts, &end);
            cr_assert(*end == ',', "bad point at %.20s", pts);
            strtod(end + 1, &end);
            cr_assert_gt(x, prev, "x not increasing with step");
            prev = x;
            k++;
            pts = end;
            while (*pts == ' ') pts++;
        }
        cr_assert_lt(n, max);
        counts[n++] = k;
    }
    return n;
}

static int count(const char *s, const char *what) {
    int n = 0;
    for (s = strstr(s, what); s; s = strstr(s + 1, what)) n++;
    return n;
}

static void check_shape(const char *svg) {
    cr_assert(!strncmp(svg, "<svg", 4), "starts: %.40s", svg);
    size_t n = strlen(svg);
    while (n && (svg[n - 1] == '\n' || svg[n - 1] == ' ')) n--;
    cr_assert(n >= 6 && !strncmp(svg + n - 6, "</svg>", 6));
    cr_assert_eq(count(svg, "<g"), count(svg, "</g>"));
    cr_assert_eq(count(svg, "<text"), count(svg, "</text>"));
}

Test(plot, default_loss_and_val_points) {
    RUN(dir, "plot %s/runA %s/runB -o %s/p.svg", dir, dir, dir);
    char p[256];
    snprintf(p, sizeof p, "%s/p.svg", dir);
    char *svg = slurp(p);
    check_shape(svg);
    int c[8];
    cr_assert_eq(polylines(svg, c, 8), 2);
    cr_assert_eq(c[0], 4); /* runA: the null at step 3 skipped */
    cr_assert_eq(c[1], 3);
    cr_assert_eq(count(svg, "<circle"), 2); /* one val_loss point per run */
    cr_assert(strstr(svg, "id=\"panel-loss\"") && strstr(svg, "id=\"panel-val_loss\""));
    /* the legend names a run by the last part of its directory that tells it apart */
    cr_assert(strstr(svg, ">runA</text>"), "legend lacks runA");
    cr_assert(strstr(svg, ">runB</text>"), "legend lacks runB");
    free(svg);
}

/* Runs whose directories end alike are told apart by their parents; every
 * panel shares one step axis (runA's steps 1..5 and runB's 10..30), so the
 * first tick label of both panels is the same. */
Test(plot, legend_parents_and_one_step_axis) {
    char p[512];
    snprintf(p, sizeof p, "mkdir -p %s/x/run %s/y/run && cp %s/runA/metrics.jsonl %s/x/run/ && "
             "cp %s/runB/metrics.jsonl %s/y/run/", dir, dir, dir, dir, dir, dir);
    cr_assert_eq(system(p), 0);
    RUN(dir, "plot %s/x/run %s/y/run/ -o %s/l.svg", dir, dir, dir);
    snprintf(p, sizeof p, "%s/l.svg", dir);
    char *svg = slurp(p);
    check_shape(svg);
    cr_assert(strstr(svg, ">x/run</text>") && strstr(svg, ">y/run</text>"), "legend: %s",
              strstr(svg, "legend"));
    /* the x tick labels of the loss panel and of the val_loss panel (whose
     * points are at steps 4 and 20 only) are the same list, up to step 30 */
    const char *loss = strstr(svg, "id=\"panel-loss\""), *val = strstr(svg, "id=\"panel-val_loss\"");
    cr_assert(loss && val);
    char ticks[2][256];
    const char *from[2] = {loss, val}, *to[2] = {val, svg + strlen(svg)};
    for (int k = 0; k < 2; k++) {
        ticks[k][0] = '\0';
        const char *tick = "font-size=\"11\" text-anchor=\"middle\">";
        for (const char *q = strstr(from[k], tick); q && q < to[k]; q = strstr(q + 1, tick)) {
            char label[32];
            if (sscanf(q + strlen(tick), "%31[^<]", label) == 1 &&
                strlen(ticks[k]) + strlen(label) + 2 < sizeof ticks[k])
                strcat(strcat(ticks[k], label), " ");
        }
    }
    cr_assert_str_eq(ticks[0], ticks[1]);
    cr_assert(strstr(ticks[1], "30 "), "val_loss ticks: %s", ticks[1]);
    free(svg);
}

Test(plot, chosen_metrics) {
    RUN(dir, "plot %s/runA %s/runB --metric lr -m loss -o %s/q.svg", dir, dir, dir);
    char p[256];
    snprintf(p, sizeof p, "%s/q.svg", dir);
    char *svg = slurp(p);
    check_shape(svg);
    int c[8];
    cr_assert_eq(polylines(svg, c, 8), 4);
    cr_assert_eq(c[0], 5); /* lr, runA */
    cr_assert_eq(c[1], 3);
    cr_assert_eq(c[2], 4); /* loss */
    cr_assert_eq(c[3], 3);
    cr_assert_eq(count(svg, "<circle"), 0);
    cr_assert(strstr(svg, "id=\"panel-lr\"") && !strstr(svg, "panel-val_loss"));
    free(svg);
}

static void expect_error(const char *args, const char *needle) {
    char log[256];
    snprintf(log, sizeof log, "%s/log", dir);
    remove(log);
    cr_assert_eq(retort(dir, args), 1, "retort %s", args);
    char *text = slurp(log);
    cr_assert(strstr(text, needle), "'%s' not in: %s", needle, text);
    free(text);
}

Test(plot, errors) {
    char a[1024], p[256];
    snprintf(a, sizeof a, "plot %s/runA %s/empty -o %s/e.svg", dir, dir, dir);
    expect_error(a, "no metrics.jsonl");
    snprintf(a, sizeof a, "plot %s/runA --metric perplexity -o %s/e.svg", dir, dir);
    expect_error(a, "unknown metric 'perplexity'");
    expect_error(a, "loss, lr, val_loss, eval_acc");
    snprintf(a, sizeof a, "plot %s/nulls -o %s/e.svg", dir, dir);
    expect_error(a, "nothing to plot");
    snprintf(p, sizeof p, "%s/e.svg", dir);
    cr_assert_neq(access(p, F_OK), 0, "a failed plot wrote its output");
}
