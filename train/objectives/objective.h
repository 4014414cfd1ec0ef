/* train/objectives/objective.h — the Objective interface: one training method
 * (LM/SFT, word-level KD, DPO, ORPO, ...) as one struct of function pointers
 * plus a name, one file per method under train/objectives/, picked by
 * objective.type from the registry (registry.c). The trainer
 * (train/trainer.c) knows no method by name; it owns the model, the
 * optimizer, the loop, data parallelism, checkpoints and logging, and asks the
 * method for everything else.
 *
 * Every method turns per-token log-probabilities into a loss through the one
 * seam of the model (docs/architecture.md):
 *   gpt_forward(model, inputs, targets) -> logp (rows, T) of the targets
 *   -> the method's loss and per-token weights g = dLoss/dlogp
 *   -> gpt_backward(model, g), or gpt_backward_kd(model, g, teacher, w)
 * so a method never touches kernels or gradients directly.
 *
 * What a method owns: the checks of its config section (validate), its data
 * (files, loaders, the validation split, the step's batches), its second
 * models (teacher, reference: frozen, forward only), its step and its
 * evaluation, its metric names (TRL's names where TRL has the method) and its
 * data position for resume.
 *
 * Who calls what, when (train_run in train/trainer.c, in this order):
 *   validate(cfg)           from config_validate (objective_check_config), so
 *                           `retort train --print-config` and every train_run
 *                           refuse a bad section before anything is opened.
 *                           Config only: no files. -1 with a message that
 *                           names the keys (section.key) and the fix.
 *   open(env)               its training (and validation) data and the
 *                           step's host buffers; env->model is still NULL
 *                           (train.epochs turns items() into train.steps before
 *                           the model is built). Returns the method's state, or
 *                           NULL with the error set and nothing left open.
 *   items(self)             training items (sequences, pairs) per epoch.
 *   has_val(self)           1 when it holds validation data.
 *   prepare(self, env)      after the model is built and finetune.* applied:
 *                           second models (checked against env->model), checks
 *                           that need the model or the data together. -1 with
 *                           the error set; the trainer then calls close().
 *   describe(self, env)     optional (may be NULL): extra set-up lines on
 *                           stdout (teacher, reference); called on rank 0 only
 *                           and not when quiet.
 *   seek(self, epoch, pos)  on --resume: the data position of the checkpoint.
 *   step(self, env, m)      one optimizer step's forward and backward. The
 *                           trainer has zeroed the gradients and set train
 *                           mode. The method draws the step's A micro-batches
 *                           (see "data parallel" below), runs the seam for
 *                           each, and leaves in the model's gradients this
 *                           rank's share of the gradient of the step's loss.
 *                           Returns the step's loss and fills m[0, n_metrics),
 *                           both over all ranks (identical on every rank). The
 *                           trainer then sums the gradients over ranks, clips
 *                           and updates.
 *   position(self, e, p)    at every checkpoint: the training data position
 *                           (epoch, pos) that seek() takes back.
 *   save_position(self)     optional: at every checkpoint, a position richer
 *                           than (epoch, pos) (data.mix: the global example
 *                           index and each file's position) as a JSON object
 *                           (new reference; NULL = none), stored in
 *                           trainer.json as data.detail.
 *   load_position(self, j)  optional: on --resume after seek(), that object
 *                           (NULL when the checkpoint has none). -1 with the
 *                           error set refuses the checkpoint.
 *   run_metrics(self, n, e) optional: after open(), this run's metric table
 *                           when it depends on the data (per-task losses
 *                           "loss/<task>"); the trainer then uses it instead of
 *                           metrics / n_metrics / n_eval_metrics.
 *   eval(self, env, m)      every eval.every steps when has_val: the trainer
 *                           has set eval mode. Returns the validation loss and
 *                           fills m[0, n_eval_metrics); no gradients, no
 *                           change to the training data position.
 *   close(self)             always once after a successful open, also after a
 *                           failed prepare: frees everything (NULL-safe).
 *
 * Data parallel (world ranks): every rank draws the whole global micro-batch
 * (world * B items) in the order one process with batch world * B would, so
 * the data position is the same on every rank, and trains on its slice
 * [rank * B, (rank + 1) * B). The weights g are scaled so that the trainer's
 * SUM all-reduce of the gradients gives the gradient of the global step's
 * loss; the loss and metrics are combined with dist_sum_* inside step().
 *
 * Metrics: the method lists its numbers once (metrics, n_metrics); the trainer
 * writes each as "name": value into the step's metrics.jsonl line (eval lines
 * "eval_name" for the first n_eval_metrics) and the ones with a console label
 * into the console step line. */
#ifndef RETORT_OBJECTIVE_H
#define RETORT_OBJECTIVE_H

#include <jansson.h>
#include <stdint.h>

#include "model/backend.h"
#include "model/model.h"
#include "train/config.h"
#include "util/util.h"

#define OBJECTIVE_MAX_METRICS 16

/* The tokenizer of a run: settled by the methods' prepare() through
 * objective_check_tokenizer from the starting model (model.init's record or
 * tokenizer files, model/model_io.h) and the data files; the trainer records
 * `name` in every checkpoint. */
typedef struct {
    int settled;             /* model.init has been asked */
    char name[256];          /* "" = unknown (data/tokenizer.h identities) */
    char source[1100];       /* where name came from, for messages: "model.init DIR" */
} RunTokenizer;

/* What the trainer lends a method. Lives as long as the run. */
typedef struct {
    const Config *cfg;       /* the resolved config (train.steps set from train.epochs) */
    const Backend *be;
    GPT *model;              /* the model being trained; NULL until prepare() */
    int B, T, A;             /* items per rank per micro-step, sequence length, accumulation */
    int rank, world;         /* data parallel: this rank of world (1 = one process) */
    Rng *rng;                /* the run's generator: checkpointed, identical on every rank */
    int quiet;               /* no console lines */
    RunTokenizer *tokenizer; /* the run's tokenizer, settled in prepare(); may be NULL */
} TrainEnv;

/* One logged number. */
typedef struct {
    const char *name;        /* metrics.jsonl key, e.g. "rewards/chosen" (TRL's name) */
    const char *format;      /* printf format of its value there, e.g. "%.9g" */
    const char *console;     /* label in the console step line; NULL = not shown */
    int digits;              /* decimals shown there */
} ObjectiveMetric;

typedef struct Objective {
    const char *name;        /* objective.type */
    const char *item_noun;   /* one training item, plural: "items", "pairs" */
    const char *batch_noun;  /* what a micro-batch holds B of: "sequences", "pairs" */
    int rows_per_item;       /* model rows per item: 1, or 2 for a preference pair */
    const ObjectiveMetric *metrics;
    int n_metrics;           /* <= OBJECTIVE_MAX_METRICS */
    int n_eval_metrics;      /* eval fills the first n_eval_metrics of them */

    int (*validate)(const Config *cfg);
    void *(*open)(const TrainEnv *env);
    int64_t (*items)(const void *self);
    int (*has_val)(const void *self);
    int (*prepare)(void *self, const TrainEnv *env);
    void (*describe)(const void *self, const TrainEnv *env);
    void (*seek)(void *self, int64_t epoch, int64_t pos);
    double (*step)(void *self, const TrainEnv *env, double *metrics);
    void (*position)(const void *self, int64_t *epoch, int64_t *pos);
    double (*eval)(void *self, const TrainEnv *env, double *metrics);
    void (*close)(void *self);
    /* optional, NULL = not used (see above) */
    json_t *(*save_position)(const void *self);
    int (*load_position)(void *self, const json_t *detail);
    const ObjectiveMetric *(*run_metrics)(const void *self, int *n_metrics, int *n_eval_metrics);
} Objective;

/* ---- the registry (registry.c) ---- */

/* The method registered as `type`; NULL with the error set (naming the
 * registered ones) when there is none. */
const Objective *objective_find(const char *type);
/* The i-th registered method (0, 1, ...); NULL past the last. */
const Objective *objective_at(int i);
/* objective_find(cfg->objective.type)->validate(cfg): config_validate's last
 * check. */
int objective_check_config(const Config *cfg);

/* ---- helpers for methods (objective.c) ---- */

/* A frozen model (teacher, reference) for forward passes only, loaded from the
 * HF directory dir onto env's backend and checked against the trained model:
 * the same vocabulary (and tokenizer, when both are known), at least
 * data.seq_len positions. `what` names it in messages ("teacher"). NULL with
 * the error set. */
GPT *objective_load_frozen(const TrainEnv *env, const char *dir, const char *what);

/* A data file against the model, from prepare(): refuses token ids past the
 * model's vocab_size, and a file built with another tokenizer than the run's
 * (the starting model's, else the first data file's) with both names; a
 * starting model that records no tokenizer and has no tokenizer files takes
 * byte-level data only when its vocab_size is the byte tokenizer's 257. A
 * file whose tokenizer is unknown (data/tokenizer.h) is accepted with a
 * warning when the run's is known. -1 with the error set. */
int objective_check_tokenizer(const TrainEnv *env, const char *path, const char *tokenizer,
                              int vocab_size);

/* The metric table of a method for this run: run_metrics' when it has one,
 * else its static table. */
const ObjectiveMetric *objective_metrics(const Objective *o, const void *self, int *n_metrics,
                                         int *n_eval_metrics);

/* sum[k] += w * m[k] for k < n: accumulating micro-batch metrics. */
void objective_metrics_add(double *sum, const double *m, double w, int n);

#endif
