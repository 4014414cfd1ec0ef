/* train/trainer.h — one training run: data, model, optimizer, the step loop,
 * validation, logging, checkpoints, resume and signals. */
#ifndef RETORT_TRAINER_H
#define RETORT_TRAINER_H

#include "model/model.h"
#include "train/config.h"

/* Generation-based evaluation (eval.generate_every). The trainer may not
 * reach eval/ (floors), so whoever starts the run lends it this hook
 * (cli/cmd_train.c fills it with eval/evaluate.c). */
#define GEN_EVAL_MAX_METRICS 16

typedef struct {
    const char *name;          /* logged as "gen/<name>" */
    int higher_is_better;      /* for eval.best_mode auto */
} GenEvalMetric;

typedef struct {
    const GenEvalMetric *metrics;  /* what run() can measure, in its order */
    int n_metrics;                 /* <= GEN_EVAL_MAX_METRICS */
    /* Before the first step: cfg's eval.generate_* settings work (the input
     * opens, the answer spec and decoding options are valid), naming the key
     * that is wrong. -1 with the error set. */
    int (*check)(void *ctx, const Config *cfg);
    /* 1 when run() measures metrics[i] under cfg (gen/accuracy needs an
     * answer spec), else 0. */
    int (*measures)(void *ctx, const Config *cfg, int i);
    /* Scores the live model (train mode off) after `step` as cfg's eval
     * section says (eval.generate_*: each stage of a plan has its own), writing
     * values[i] for metrics[i] (NaN: not measured this time). tokenizer is
     * the run's tokenizer identity (data/tokenizer.h; "" when unknown).
     * Called on rank 0 only; the trainer sends the numbers to the other
     * ranks. It may use the model's activations and KV cache. -1 with the
     * error set. */
    int (*run)(void *ctx, const Config *cfg, GPT *model, const char *tokenizer, int step,
               double *values);
    void *ctx;
} GenEvalHook;

typedef struct {
    int resume;        /* continue from the newest complete checkpoint in out_dir */
    int quiet;         /* no per-step lines (tests) */
} TrainOptions;

/* Lends every later train_run (and so every stage of stages_run) the hook;
 * NULL takes it back. A run with eval.generate_every > 0 and no hook is
 * refused before it starts. hook must outlive the runs. */
void train_set_gen_eval(const GenEvalHook *hook);

/* Runs to cfg->train.steps or until SIGTERM/SIGINT (then saves and returns 0).
 * Returns 0 on success, -1 with the error set. */
int train_run(const Config *cfg, const TrainOptions *opt);

/* Installs the SIGTERM/SIGINT handlers: the first signal asks the loop to stop
 * after the current step (checkpoint, exit 0); a second exits at once. */
void train_install_signal_handlers(void);
/* For tests: request a stop as a signal would, after `step` completes. */
void train_request_stop_at(int step);

#endif
