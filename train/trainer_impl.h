/* train/trainer_impl.h — the state of one training run, shared by the loop
 * (trainer.c) and the objectives' steps (steps.c). Not a public interface. */
#ifndef RETORT_TRAINER_IMPL_H
#define RETORT_TRAINER_IMPL_H

#include <stdio.h>

#include "data/h5data.h"
#include "data/pref_batch.h"
#include "model/backend.h"
#include "train/config.h"
#include "model/model.h"
#include "train/objectives/dpo.h"
#include "train/optim.h"
#include "train/trainer.h"
#include "util/util.h"

typedef enum { OBJ_LM = 0, OBJ_KD, OBJ_DPO } ObjectiveKind;

/* What one optimizer step (or one validation pass) measured. */
typedef struct {
    double loss;              /* the loss that was optimized */
    double ce, kd, agree;     /* kd: gold CE, divergence per token, top-1 agreement */
    int on_policy;            /* kd: the batch's completions came from the student */
    DpoMetrics dpo;           /* dpo: TRL's metrics, means over the step's pairs */
} StepStats;

typedef struct Trainer {
    const Config *cfg;
    const TrainOptions *opt;
    const Backend *be;
    ObjectiveKind obj;
    GPT *model;
    Optimizer *optim;
    LrSchedule sched;
    /* lm / kd data */
    Dataset train_ds, val_ds;
    int have_val_ds;
    DataLoader train_dl, val_dl;
    /* dpo data */
    PrefDataset pref_train, pref_val;
    int have_pref_val_ds;
    PrefLoader pref_dl, pref_val_dl;
    int have_val;
    /* second models, forward only */
    GPT *teacher;             /* kd online */
    GPT *ref;                 /* dpo online reference */
    int step;                 /* optimizer steps completed */
    int64_t tokens_seen;
    Rng rng;
    int B, T, A;              /* batch (sequences or pairs) per rank, sequence length, accumulation */
    int rows;                 /* model rows per micro-batch: B, or 2B for dpo */
    int rank, world;          /* data parallel: this rank of world (1 = single process) */
    Rng sample_rng;           /* kd on-policy sampling: per rank, apart from rng */
    /* every rank draws the whole global micro-batch (world * B sequences or
     * pairs) in the order a single process with batch world * B would, and
     * trains on its slice [rank * B, (rank + 1) * B) */
    int *inputs, *targets;    /* (A, world * rows, T) host */
    int64_t *items;           /* (A, world * B) dataset items / pair ids */
    int *loc_in, *loc_tg;     /* dpo: this rank's rows of a micro-batch (rows, T) */
    float *logp, *g;          /* (rows, T) host */
    float *w, *kd, *agree;    /* kd: (rows, T) */
    int *topk_ids;            /* kd offline: (rows, T, K) */
    float *topk_logp;
    double *sums, *ref_sums;  /* dpo: (rows) */
    int64_t *counts;
    DpoPair *pairs;           /* dpo: (B) */
    double *dlogp_c, *dlogp_r;
    FILE *metrics;
} Trainer;

/* steps.c */
int steps_setup(Trainer *t);          /* objective buffers and second models */
void steps_free(Trainer *t);
/* One optimizer step's forward and backward (gradients zeroed first). */
void train_step(Trainer *t, StepStats *st);
/* A validation pass. NAN loss when there is no validation data. */
void eval_pass(Trainer *t, StepStats *st);
/* The training data position, for checkpoints, and seeking to it. */
void data_position(const Trainer *t, int64_t *epoch, int64_t *pos);
void data_seek(Trainer *t, int64_t epoch, int64_t pos);
int64_t train_items(const Trainer *t);

#endif
