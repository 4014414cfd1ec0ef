/* train/objectives/kd.c — word-level knowledge distillation (objective.type
 * kd), with GKD's on-policy mixing.
 *
 *   loss = (1 - alpha) CE(gold) + alpha T^2 D_beta(teacher_T || student_T)
 *
 * per target token, both terms normalised by the step's target tokens over
 * every rank (Kim & Rush 2016, Eq. 6 with Hinton's T^2; D_beta is the
 * generalized JSD of TRL's GKDTrainer: beta 0 forward KL, 1 reverse KL). The
 * CE term is the seam's per-token weight g = -(1 - alpha) / D; the divergence
 * and its gradient live inside the fused classifier (gpt_kd_forward,
 * gpt_backward_kd with per-token weight w = alpha T^2 / D), so no V-wide
 * array reaches the host.
 *
 * The teacher is a frozen model run forward on the same rows (kd.teacher,
 * online) or the dataset's stored top-K log-probs (offline). With
 * kd.on_policy = lambda, a step's completions are, with probability lambda,
 * sampled from the student first (GKD, Agarwal et al. 2024): each row keeps
 * its prompt (the tokens before its first target) and the student continues
 * it at temperature 1; the coin comes from the run's generator, so every
 * rank flips the same one.
 *
 * Per-task weights (objective.task_weights): a token of task t counts with
 * w_t / D_t instead of 1 / D (D_t: task t's target tokens in the step over
 * every rank), both terms alike, so the loss is sum_t w_t times task t's mean
 * per-token loss (1 - alpha) CE + alpha T^2 D_beta; logged as loss/<task>.
 *
 * Packed rows (data.pack): the student and an online teacher both run the
 * rows packed (seq_batches_pack_model), and the offline teacher rows are
 * gathered per slot by its token index (packed_topk_rows), so each token
 * meets its own teacher row; on-policy sampling is refused with packing.
 *
 * Metrics (training lines): ce, kd (divergence per target token), agreement
 * (student and teacher top-1 agree), on_policy (1 when the step sampled),
 * after loss/<task> with task weights. Validation is the lm objective's:
 * cross-entropy per target token (per task, weighted, with task weights). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/decode_batch.h"
#include "model/generate.h"
#include "train/dist.h"
#include "train/objectives/objective.h"
#include "train/objectives/seq_batches.h"

typedef struct {
    SeqBatches d;
    GPT *teacher;             /* online teacher, or NULL (offline top-K) */
    float *w, *kd, *agree;    /* (B, T) KD weight, divergence, top-1 agreement */
    int *topk_ids;            /* offline: (B, T, K) */
    float *topk_logp;
    Rng sample_rng;           /* on-policy sampling: per rank, apart from the run's rng */
    int m0;                   /* index of "ce" in the metrics: after loss/<task> */
    ObjectiveMetric metrics[OBJECTIVE_MAX_METRICS]; /* loss/<task>..., then kd_metrics */
} Kd;

enum { KD_CE, KD_KD, KD_AGREE, KD_ON_POLICY, KD_N_METRICS };

static const ObjectiveMetric kd_metrics[KD_N_METRICS] = {
    [KD_CE] = {"ce", "%.9g", "ce", 4},
    [KD_KD] = {"kd", "%.9g", "kd", 4},
    [KD_AGREE] = {"agreement", "%.6f", "agree", 3},
    [KD_ON_POLICY] = {"on_policy", "%.0f", NULL, 0},
};

static int kd_validate(const Config *c) {
    if (c->kd.on_policy > 0 && !c->kd.teacher[0])
        return err_set("config: kd.on_policy samples completions the dataset has no teacher rows "
                       "for; it needs an online teacher (kd.teacher)");
    return 0;
}

static void kd_close(void *self) {
    Kd *k = self;
    if (!k) return;
    gpt_free(k->teacher);
    seq_batches_close(&k->d);
    free(k->w);
    free(k->kd);
    free(k->agree);
    free(k->topk_ids);
    free(k->topk_logp);
    free(k);
}

static void *kd_open(const TrainEnv *env) {
    Kd *k = xcalloc(1, sizeof *k);
    if (seq_batches_open(&k->d, env) != 0) {
        kd_close(k);
        return NULL;
    }
    size_t N = (size_t)env->B * env->T;
    k->w = xmalloc(N * sizeof(float));
    k->kd = xmalloc(N * sizeof(float));
    k->agree = xmalloc(N * sizeof(float));
    rng_seed(&k->sample_rng, (uint64_t)env->cfg->train.seed * 7919 + (uint64_t)env->rank + 1);
    k->m0 = k->d.tw.n;
    seq_batches_task_metrics(&k->d, k->metrics);
    memcpy(k->metrics + k->m0, kd_metrics, sizeof kd_metrics);
    return k;
}

static const ObjectiveMetric *kd_run_metrics(const void *self, int *n, int *n_eval) {
    const Kd *k = self;
    *n = k->m0 + KD_N_METRICS;
    *n_eval = k->m0; /* eval_loss/<task> */
    return k->metrics;
}

static int64_t kd_items(const void *self) {
    return seq_batches_items(&((const Kd *)self)->d);
}

static int kd_has_val(const void *self) {
    return ((const Kd *)self)->d.have_val;
}

static int kd_prepare(void *self, const TrainEnv *env) {
    Kd *k = self;
    const Config *c = env->cfg;
    if (seq_batches_check_tokenizer(&k->d, env) != 0) return -1;
    if (c->kd.teacher[0]) {
        k->teacher = objective_load_frozen(env, c->kd.teacher, "teacher");
        return k->teacher ? 0 : -1;
    }
    if (k->d.train_ds[0].topk == 0)
        return err_set("%s has no teacher_topk_* (offline teacher) and kd.teacher is empty; set "
                       "kd.teacher to a checkpoint, or build the data with `retort generate "
                       "--store-topk K`",
                       c->data.train);
    size_t N = (size_t)env->B * env->T, K = (size_t)k->d.train_ds[0].topk;
    k->topk_ids = xmalloc(N * K * sizeof(int));
    k->topk_logp = xmalloc(N * K * sizeof(float));
    return 0;
}

static void kd_describe(const void *self, const TrainEnv *env) {
    const Kd *k = self;
    seq_batches_describe(&k->d, env);
    if (k->teacher)
        printf("teacher: %s (%zu parameters, frozen)\n", env->cfg->kd.teacher,
               gpt_num_params(k->teacher));
}

static void kd_seek(void *self, int64_t epoch, int64_t pos) {
    seq_batches_seek(&((Kd *)self)->d, epoch, pos);
}

static void kd_position(const void *self, int64_t *epoch, int64_t *pos) {
    seq_batches_position(&((const Kd *)self)->d, epoch, pos);
}

static json_t *kd_save_position(const void *self) {
    return seq_batches_save_position(&((const Kd *)self)->d);
}

static int kd_load_position(void *self, const json_t *detail) {
    return seq_batches_load_position(&((Kd *)self)->d, detail);
}

/* GKD on-policy: each of the B rows keeps its prompt (the tokens up to its
 * first target) and the student samples the rest (temperature 1, to EOS or
 * the end of the row); targets become the sampled tokens. The rows are
 * decoded together (model/decode_batch.h), each with a generator seeded from
 * the rank's sampling stream in row order, so a row's sample does not depend
 * on the others. */
static void student_completions(Kd *k, const TrainEnv *env, int *inputs, int *targets) {
    int T = env->T, B = env->B, eos = k->d.train_ds[0].eos_id;
    DecodeRequest *req = xcalloc((size_t)B, sizeof(DecodeRequest));
    Rng *rngs = xmalloc((size_t)B * sizeof(Rng));
    int *outs = xmalloc((size_t)B * (T + 1) * sizeof(int)), *lens = xcalloc((size_t)B, sizeof(int));
    int *row_of = xmalloc((size_t)B * sizeof(int)), *plen = xmalloc((size_t)B * sizeof(int));
    int n_req = 0;
    for (int b = 0; b < B; b++) {
        const int *tg = targets + (size_t)b * T;
        int p = 0; /* prompt length: tokens before the first target */
        while (p < T && tg[p] < 0) p++;
        if (p == T) continue; /* no completion in this row */
        p++;                  /* inputs[0..p) predict the first completion token */
        rng_seed(&rngs[n_req], rng_u64(&k->sample_rng));
        req[n_req] = (DecodeRequest){.prompt = inputs + (size_t)b * T, .n = p, .rows = 1,
                                     .opts = {T + 1 - p, 1.0, 0, 1.0, eos, NULL, NULL},
                                     .rngs = &rngs[n_req], .out = outs + (size_t)n_req * (T + 1),
                                     .lens = &lens[n_req]};
        row_of[n_req] = b;
        plen[n_req++] = p;
    }
    gpt_set_train_mode(env->model, 0);
    if (n_req > 0) decode_batch_list(env->model, n_req, req, n_req);
    gpt_set_train_mode(env->model, 1);
    for (int i = 0; i < n_req; i++) {
        int b = row_of[i], p = plen[i], n = p + lens[i];
        int *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        const int *gen = outs + (size_t)i * (T + 1); /* position p + j holds gen[j] */
        for (int j = 0; j < T; j++) {
            int at = j < p ? in[j] : j < n ? gen[j - p] : eos;
            int next = j + 1 < p ? in[j + 1] : j + 1 < n ? gen[j + 1 - p] : -1;
            tg[j] = j >= p - 1 && j + 1 < n ? next : -1;
            in[j] = at;
        }
    }
    free(req);
    free(rngs);
    free(outs);
    free(lens);
    free(row_of);
    free(plen);
}

/* data.pack with the offline teacher: the K-wide rows of the n slots, by
 * each slot's token index (-1, padding: id 0 and logp 0; its target is -1,
 * so nothing reads them), as dataset_topk_row gives them per example. Slots
 * of consecutive token indices (an example's run in a row) are read as one
 * range, so a streamed file reads each example's rows once. */
static int packed_topk_rows(const Dataset *ds, const int64_t *token_index, int n, int *ids,
                            float *logp) {
    int K = ds->topk;
    for (int i = 0; i < n;) {
        int run = 1;
        if (token_index[i] < 0) {
            for (int k = 0; k < K; k++) {
                ids[(size_t)i * K + k] = 0;
                logp[(size_t)i * K + k] = 0.0f;
            }
        } else {
            while (i + run < n && token_index[i + run] == token_index[i] + run) run++;
            if (dataset_topk_tokens(ds, token_index[i], run, ids + (size_t)i * K,
                                    logp + (size_t)i * K) != 0)
                return -1;
        }
        i += run;
    }
    return 0;
}

static double kd_step(void *self, const TrainEnv *env, double *metrics) {
    Kd *k = self;
    SeqBatches *d = &k->d;
    const Config *c = env->cfg;
    int N = env->B * env->T, K = d->train_ds[0].topk, GB = env->world * env->B, m0 = k->m0;
    seq_batches_draw(d, env);
    /* the coin is the same on every rank (the run's rng advances identically) */
    if (c->kd.on_policy > 0 && rng_uniform(env->rng) < c->kd.on_policy) {
        metrics[m0 + KD_ON_POLICY] = 1;
        for (int a = 0; a < env->A; a++)
            student_completions(k, env, seq_batches_local(d, env, d->inputs, a),
                                seq_batches_local(d, env, d->targets, a));
    }
    double D = seq_batches_step_targets(d, env);
    double alpha = c->kd.alpha, T2 = c->kd.temperature * c->kd.temperature;
    float gw = D > 0 ? (float)(-(1 - alpha) / D) : 0.0f;
    float kw = D > 0 ? (float)(alpha * T2 / D) : 0.0f;
    /* task weights: per task the factor w_t / D_t in place of 1 / D */
    double task_D[CFG_MAX_TASKS], coef[CFG_MAX_TASKS], task_loss[CFG_MAX_TASKS] = {0};
    if (d->tw.n) seq_batches_task_targets(d, env, task_D, coef);
    KdTeacher teacher = {k->teacher, k->topk_ids, k->topk_logp, k->teacher ? 0 : K,
                         (float)c->kd.temperature, (float)c->kd.beta};
    double ce = 0, kd = 0, agree = 0;
    for (int a = 0; a < env->A; a++) {
        const int *in = seq_batches_local(d, env, d->inputs, a);
        const int *tg = seq_batches_local(d, env, d->targets, a);
        const int *task = seq_batches_local_rows(d, env, d->tasks, a);
        const int *src = seq_batches_local_rows(d, env, d->sources, a);
        seq_batches_pack_model(d, env, a, env->model);
        gpt_forward(env->model, in, tg, env->B, env->T, d->logp);
        if (k->teacher) {
            seq_batches_pack_model(d, env, a, k->teacher);
            gpt_forward(k->teacher, in, tg, env->B, env->T, NULL);
        } else if (d->pack) { /* each slot's teacher row is its token's */
            if (packed_topk_rows(&d->train_ds[0], seq_batches_token_index(d, env, a), N,
                                 k->topk_ids, k->topk_logp) != 0) {
                fprintf(stderr, "retort train: error: rank %d: %s\n", env->rank, err_msg());
                dist_abort(1);
            }
        } else {
            for (int b = 0; b < env->B; b++)
                if (dataset_topk_row(&d->train_ds[src[b]],
                                     d->items[(size_t)a * GB + (size_t)env->rank * env->B + b],
                                     env->T, k->topk_ids + (size_t)b * env->T * K,
                                     k->topk_logp + (size_t)b * env->T * K) != 0) {
                    fprintf(stderr, "retort train: error: rank %d: %s\n", env->rank, err_msg());
                    dist_abort(1);
                }
        }
        gpt_kd_forward(env->model, &teacher, k->kd, k->agree);
        for (int i = 0; i < N; i++) {
            int on = tg[i] >= 0, t = d->tw.n ? task[i / env->T] : -1;
            d->g[i] = on ? gw : 0.0f;
            k->w[i] = on ? kw : 0.0f;
            if (on && d->tw.n) {
                d->g[i] = t >= 0 ? (float)(-(1 - alpha) * coef[t]) : 0.0f;
                k->w[i] = t >= 0 ? (float)(alpha * T2 * coef[t]) : 0.0f;
                if (t >= 0) task_loss[t] += (1 - alpha) * -d->logp[i] + alpha * T2 * k->kd[i];
            }
            if (on) {
                ce -= d->logp[i];
                kd += k->kd[i];
                agree += k->agree[i];
            }
        }
        gpt_backward_kd(env->model, d->g, &teacher, k->w);
    }
    if (D > 0) {
        metrics[m0 + KD_CE] = dist_sum_f64(ce) / D;
        metrics[m0 + KD_KD] = dist_sum_f64(kd) / D;
        metrics[m0 + KD_AGREE] = dist_sum_f64(agree) / D;
    }
    if (!d->tw.n) return (1 - alpha) * metrics[KD_CE] + alpha * T2 * metrics[KD_KD];
    double loss = 0;
    for (int t = 0; t < d->tw.n; t++) { /* NAN (logged null): a task absent from the step */
        double sum = dist_sum_f64(task_loss[t]);
        metrics[t] = task_D[t] > 0 ? sum / task_D[t] : NAN;
        if (task_D[t] > 0) loss += d->tw.weight[t] * metrics[t];
    }
    return loss;
}

static double kd_eval(void *self, const TrainEnv *env, double *metrics) {
    return seq_batches_eval(&((Kd *)self)->d, env, metrics);
}

const Objective objective_kd = {
    .name = "kd",
    .item_noun = "items",
    .batch_noun = "sequences",
    .rows_per_item = 1,
    .metrics = kd_metrics,
    .n_metrics = KD_N_METRICS,
    .n_eval_metrics = 0,
    .validate = kd_validate,
    .open = kd_open,
    .items = kd_items,
    .has_val = kd_has_val,
    .prepare = kd_prepare,
    .describe = kd_describe,
    .seek = kd_seek,
    .step = kd_step,
    .position = kd_position,
    .eval = kd_eval,
    .close = kd_close,
    .save_position = kd_save_position,
    .load_position = kd_load_position,
    .run_metrics = kd_run_metrics,
};
