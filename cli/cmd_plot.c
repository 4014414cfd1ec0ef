/* cli/cmd_plot.c — `retort plot RUN_DIR... [--metric NAME ...] -o plot.svg`:
 * runs' metrics.jsonl against step, as an SVG (eval/plot.c). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "eval/plot.h"
#include "util/util.h"

static void usage_plot(FILE *f) {
    fprintf(f,
            "usage: retort plot RUN_DIR... [--metric NAME ...] -o plot.svg\n\n"
            "Draws each run's metrics.jsonl against step as an SVG (no dependency): one\n"
            "panel per metric, one coloured line per run, validation metrics as points,\n"
            "a legend of the run directories. Null values are skipped.\n\n"
            "options:\n"
            "  -m, --metric NAME   a metric to draw (repeatable; default loss, and\n"
            "                      val_loss where a run has it)\n"
            "  -o, --out FILE      the SVG written (atomically)\n"
            "  -h, --help          this help\n");
}

int cmd_plot(int argc, char **argv) {
    static const struct option opts[] = {{"metric", required_argument, 0, 'm'},
                                         {"out", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char **metrics = xmalloc(sizeof *metrics * (size_t)(argc + 1));
    int n_metrics = 0;
    const char *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': metrics[n_metrics++] = optarg; break;
        case 'o': out = optarg; break;
        case 'h': usage_plot(stdout); free(metrics); return 0;
        default: usage_plot(stderr); free(metrics); return 2;
        }
    }
    if (!out || optind >= argc) {
        fprintf(stderr, "retort plot: error: %s\n\n",
                !out ? "-o FILE is required" : "give at least one RUN_DIR");
        usage_plot(stderr);
        free(metrics);
        return 2;
    }
    int rc = plot_runs_svg((const char *const *)argv + optind, argc - optind, metrics,
                           n_metrics, out);
    free(metrics);
    if (rc != 0) return cli_fail("plot");
    printf("plot: %d run(s) -> %s\n", argc - optind, out);
    return 0;
}
