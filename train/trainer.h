/* train/trainer.h — one training run: data, model, optimizer, the step loop,
 * validation, logging, checkpoints, resume and signals. */
#ifndef RETORT_TRAINER_H
#define RETORT_TRAINER_H

#include "train/config.h"

typedef struct {
    int resume;        /* continue from the newest complete checkpoint in out_dir */
    int quiet;         /* no per-step lines (tests) */
} TrainOptions;

/* Runs to cfg->train.steps or until SIGTERM/SIGINT (then saves and returns 0).
 * Returns 0 on success, -1 with the error set. */
int train_run(const Config *cfg, const TrainOptions *opt);

/* Installs the SIGTERM/SIGINT handlers: the first signal asks the loop to stop
 * after the current step (checkpoint, exit 0); a second exits at once. */
void train_install_signal_handlers(void);
/* For tests: request a stop as a signal would, after `step` completes. */
void train_request_stop_at(int step);

#endif
