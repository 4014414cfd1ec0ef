/* train/best.h — the best checkpoint of a run (eval.best_metric).
 *
 * RUN/best/ is a loadable checkpoint directory (model.safetensors,
 * config.json, retort.json and the tokenizer files, the PEFT adapter with
 * LoRA; no optimizer state) of the step whose metric was best so far, with
 * best.json {"metric", "mode", "value", "step"} and DONE. It is replaced only
 * when a measurement is strictly better than the best so far, and atomically:
 * the new one is built in RUN/best.tmp, fsynced, and swapped with RUN/best in
 * one renameat2(RENAME_EXCHANGE) (a plain rename the first time), so a crash
 * leaves the old best or the new one, never neither. Its name is not a
 * step-XXXXXXXX one, so checkpoint pruning and --resume never touch it.
 *
 * Across a resume the best so far is part of the run's state: every periodic
 * checkpoint's trainer.json records it ("best"), and a resumed run starts
 * from the record of the checkpoint it resumes (best.json when that has none
 * and best/ is not newer than it). A best/ newer than the resumed step comes
 * from steps the resumed run will train again; it is removed (and remade if
 * those steps win again). */
#ifndef RETORT_BEST_H
#define RETORT_BEST_H

#include <jansson.h>

#include "train/config.h"

typedef struct {
    int on;             /* eval.best_metric is set */
    char metric[64];    /* "val_loss" or "gen/<name>" */
    int higher;         /* 1: larger is better (max), 0: smaller (min) */
    int have;           /* a value was measured */
    double value;       /* the best so far (when have) */
    int step;           /* its step */
} BestTracker;

/* From the config: the metric, and its direction (eval.best_mode; auto asks
 * gen_higher for a gen/ metric, val_loss is lower-better). gen_names lists the
 * n_gen metrics generation-based evaluation reports (without "gen/"); a
 * gen/ metric not among them is refused, listing them. -1 with the error
 * set. */
int best_init(BestTracker *b, const Config *cfg, const char *const *gen_names,
              const int *gen_higher, int n_gen);

/* 1 when value (finite) is strictly better than the best so far, or the first
 * one measured. */
int best_improves(const BestTracker *b, double value);

/* The record for a checkpoint's trainer.json: {"metric", "mode", "value",
 * "step"}, or NULL when off or nothing was measured yet. */
json_t *best_record(const BestTracker *b);

/* On resume from the checkpoint of `step` whose trainer.json is `record`
 * (its "best", NULL when absent): sets the best so far as above, and removes
 * RUN/best when it is newer than step. Prints what it did unless quiet. -1
 * with the error set. */
int best_resume(BestTracker *b, const char *run_dir, int step, const json_t *record, int quiet);

/* RUN/best.tmp, fresh (an old one removed): the caller writes the model files
 * into it, then best_commit. -1 with the error set. */
int best_begin(const char *run_dir, char *tmp_dir, size_t cap);
/* Writes best.json (b's metric and mode, value, step) and DONE into tmp_dir,
 * fsyncs it and swaps it into place as RUN/best; on success b holds value and
 * step. -1 with the error set (tmp_dir removed). */
int best_commit(BestTracker *b, const char *run_dir, const char *tmp_dir, double value, int step);

#endif
