/* eval/plot.h — runs' metrics.jsonl drawn against step as an SVG, with no
 * dependency: one panel per metric, axes with ticks and labels, one coloured
 * polyline per run (training lines) or circles (metrics of validation lines,
 * those carrying "val_loss"), and a legend of the run directories. */
#ifndef RETORT_PLOT_H
#define RETORT_PLOT_H

/* Reads RUN/metrics.jsonl of each run and writes the SVG to out atomically.
 * metrics NULL (or n_metrics 0) draws "loss" and, where any run has it,
 * "val_loss". Null values are skipped. 0, or -1 with the error set: a run
 * without metrics.jsonl, a line that is not JSON, an unknown metric (the
 * message lists the available ones), nothing to plot, a failed write. */
int plot_runs_svg(const char *const *runs, int n_runs, const char *const *metrics,
                  int n_metrics, const char *out);

#endif
