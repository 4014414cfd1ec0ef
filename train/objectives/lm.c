/* train/objectives/lm.c — the LM/SFT objective (formula in lm.h): the pure
 * loss on per-token log-probabilities, and the method behind objective.type
 * lm. kd files train here too, as SFT on the teacher's outputs
 * (sequence-level KD). */
#include "train/objectives/lm.h"

#include <math.h>
#include <stdlib.h>

#include "train/dist.h"
#include "train/objectives/objective.h"
#include "train/objectives/seq_batches.h"

int64_t lm_count_targets(const int *targets, int64_t n) {
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) k += targets[i] >= 0;
    return k;
}

double lm_loss_and_weights(const float *logp, const int *targets, int64_t n, double D, float *g) {
    double loss = 0;
    float w = D > 0 ? (float)(-1.0 / D) : 0.0f;
    for (int64_t i = 0; i < n; i++) {
        if (targets[i] >= 0) {
            loss -= logp[i];
            g[i] = w;
        } else {
            g[i] = 0.0f;
        }
    }
    return D > 0 ? loss / D : 0.0;
}

double lm_task_loss_and_weights(const float *logp, const int *targets, const int *task, int B,
                                int T, const double *coef, float *g, double *task_nll) {
    double loss = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < T; j++) {
            size_t i = (size_t)b * T + j;
            int t = task[b];
            if (targets[i] < 0 || t < 0) {
                g[i] = 0.0f;
                continue;
            }
            loss -= coef[t] * logp[i];
            task_nll[t] -= logp[i];
            g[i] = (float)-coef[t];
        }
    return loss;
}

/* ------------------------------------------------------------ the method */

typedef struct {
    SeqBatches d;
    ObjectiveMetric metrics[OBJECTIVE_MAX_METRICS]; /* "loss/<task>" with task weights */
} Lm;

static int lm_validate(const Config *cfg) {
    (void)cfg; /* the lm objective has no section of its own */
    return 0;
}

static void *lm_open(const TrainEnv *env) {
    Lm *l = xcalloc(1, sizeof *l);
    if (seq_batches_open(&l->d, env) != 0) {
        seq_batches_close(&l->d);
        free(l);
        return NULL;
    }
    seq_batches_task_metrics(&l->d, l->metrics);
    return l;
}

/* With task weights, "loss/<task>" (train) and "eval_loss/<task>". */
static const ObjectiveMetric *lm_run_metrics(const void *self, int *n, int *n_eval) {
    const Lm *l = self;
    *n = *n_eval = l->d.tw.n;
    return l->metrics;
}

static int64_t lm_items(const void *self) {
    return seq_batches_items(self);
}

static int lm_has_val(const void *self) {
    return ((const SeqBatches *)self)->have_val;
}

static int lm_prepare(void *self, const TrainEnv *env) {
    return seq_batches_check_tokenizer(self, env);
}

static void lm_describe(const void *self, const TrainEnv *env) {
    seq_batches_describe(self, env);
}

static void lm_seek(void *self, int64_t epoch, int64_t pos) {
    seq_batches_seek(self, epoch, pos);
}

static void lm_position(const void *self, int64_t *epoch, int64_t *pos) {
    seq_batches_position(self, epoch, pos);
}

static json_t *lm_save_position(const void *self) {
    return seq_batches_save_position(self);
}

static int lm_load_position(void *self, const json_t *detail) {
    return seq_batches_load_position(self, detail);
}

/* The step's loss is normalised by its target tokens over every rank, so A
 * micro-batches on world ranks equal one batch of A * world * B rows. */
static double lm_task_step(SeqBatches *d, const TrainEnv *env, double *metrics) {
    double D[CFG_MAX_TASKS], coef[CFG_MAX_TASKS], nll[CFG_MAX_TASKS] = {0}, loss = 0;
    seq_batches_task_targets(d, env, D, coef);
    for (int a = 0; a < env->A; a++) {
        const int *in = seq_batches_local(d, env, d->inputs, a);
        const int *tg = seq_batches_local(d, env, d->targets, a);
        gpt_forward(env->model, in, tg, env->B, env->T, d->logp);
        loss += lm_task_loss_and_weights(d->logp, tg, seq_batches_local_rows(d, env, d->tasks, a),
                                         env->B, env->T, coef, d->g, nll);
        gpt_backward(env->model, d->g);
    }
    for (int t = 0; t < d->tw.n; t++) { /* NAN (logged null): a task absent from the step */
        double sum = dist_sum_f64(nll[t]);
        metrics[t] = D[t] > 0 ? sum / D[t] : NAN;
    }
    return dist_sum_f64(loss);
}

static double lm_step(void *self, const TrainEnv *env, double *metrics) {
    SeqBatches *d = self;
    int N = env->B * env->T;
    seq_batches_draw(d, env);
    if (d->tw.n) return lm_task_step(d, env, metrics);
    double D = seq_batches_step_targets(d, env), loss = 0;
    for (int a = 0; a < env->A; a++) {
        const int *in = seq_batches_local(d, env, d->inputs, a);
        const int *tg = seq_batches_local(d, env, d->targets, a);
        seq_batches_pack_model(d, env, a, env->model);
        gpt_forward(env->model, in, tg, env->B, env->T, d->logp);
        loss += lm_loss_and_weights(d->logp, tg, N, D, d->g);
        gpt_backward(env->model, d->g);
    }
    return dist_sum_f64(loss); /* each rank holds its share of the step's mean */
}

static double lm_eval(void *self, const TrainEnv *env, double *metrics) {
    return seq_batches_eval(self, env, metrics);
}

static void lm_close(void *self) {
    if (!self) return;
    seq_batches_close(self);
    free(self);
}

const Objective objective_lm = {
    .name = "lm",
    .item_noun = "items",
    .batch_noun = "sequences",
    .rows_per_item = 1,
    .metrics = NULL,
    .n_metrics = 0,
    .n_eval_metrics = 0,
    .validate = lm_validate,
    .open = lm_open,
    .items = lm_items,
    .has_val = lm_has_val,
    .prepare = lm_prepare,
    .describe = lm_describe,
    .seek = lm_seek,
    .step = lm_step,
    .position = lm_position,
    .eval = lm_eval,
    .close = lm_close,
    .save_position = lm_save_position,
    .load_position = lm_load_position,
    .run_metrics = lm_run_metrics,
};
