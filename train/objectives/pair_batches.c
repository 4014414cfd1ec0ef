/* train/objectives/pair_batches.c — preference pairs for dpo and orpo (see
 * pair_batches.h). */
#include "train/objectives/pair_batches.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/dist.h"

static int open_loaders(PairBatches *d, const TrainEnv *env, const char *method, int mp, int mc) {
    const Config *c = env->cfg;
    int T = env->T;
    Schema s;
    if (dataset_peek_schema(c->data.train, &s) != 0) return -1;
    if (s != SCHEMA_PREF)
        return err_set("%s: objective %s trains on preference pairs (schema pref), but this "
                       "file is '%s'; build one with `retort data build --schema pref` or "
                       "`retort pairs`",
                       c->data.train, method, schema_name(s));
    if (pref_dataset_open(&d->train, c->data.train) != 0) return -1;
    if (!c->model.init[0] && d->train.vocab_size > c->model.vocab_size)
        return err_set("%s: dataset vocab_size %d exceeds model.vocab_size %d", c->data.train,
                       d->train.vocab_size, c->model.vocab_size);
    int64_t n = d->train.n_pairs, n_val = 0;
    if (c->data.val[0]) {
        if (pref_dataset_open(&d->val, c->data.val) != 0) return -1;
        d->have_val_ds = 1;
        if (pref_loader_init(&d->val_dl, &d->val, T, mp, mc, 0, 0, 0, d->val.n_pairs) != 0)
            return -1;
        d->have_val = 1;
    } else if (c->data.val_fraction > 0) {
        n_val = (int64_t)(n * c->data.val_fraction);
        if (n_val < 1) n_val = 1;
        if (n_val >= n)
            return err_set("%s: %lld pairs are too few to hold out data.val_fraction=%g",
                           c->data.train, (long long)n, c->data.val_fraction);
        if (pref_loader_init(&d->val_dl, &d->train, T, mp, mc, 0, 0, n - n_val, n_val) != 0)
            return -1;
        d->have_val = 1;
    }
    return pref_loader_init(&d->dl, &d->train, T, mp, mc, (uint64_t)c->train.seed,
                            c->data.shuffle, 0, n - n_val);
}

int pair_batches_open(PairBatches *d, const TrainEnv *env, const char *method,
                      int max_prompt_len, int max_completion_len) {
    memset(d, 0, sizeof *d);
    d->pack = env->cfg->data.pack;
    d->max_pairs = d->pack ? PAIR_PACK_MAX * env->B : env->B;
    size_t GN = (size_t)2 * env->B * env->T * env->world;
    size_t N = (size_t)2 * d->max_pairs * env->T, NP = (size_t)2 * env->B * env->T;
    d->inputs = xmalloc((size_t)env->A * GN * sizeof(int));
    d->targets = xmalloc((size_t)env->A * GN * sizeof(int));
    d->items = xmalloc((size_t)env->A * env->world * env->B * sizeof(int64_t));
    d->loc_in = xmalloc(N * sizeof(int));
    d->loc_tg = xmalloc(N * sizeof(int));
    d->logp = xmalloc(N * sizeof(float));
    d->g = xmalloc(N * sizeof(float));
    if (open_loaders(d, env, method, max_prompt_len, max_completion_len) != 0) return -1;
    if (d->pack) {
        pair_packer_init(&d->packer, &d->dl, d->max_pairs);
        d->pk_in = xmalloc(4 * NP * sizeof(int));
        d->pk_tg = d->pk_in + NP;
        d->pk_ds = d->pk_tg + NP;
        d->pk_map = d->pk_ds + NP;
        d->pk_logp = xmalloc(2 * NP * sizeof(float));
        d->pk_g = d->pk_logp + NP;
        d->pk_scratch = xmalloc((4 * NP + 4 * (size_t)d->max_pairs * env->T) * sizeof(int));
        d->pk_ids = xmalloc(2 * (size_t)d->max_pairs * sizeof(int64_t)); /* own, another's */
    }
    return 0;
}

int pair_batches_check_tokenizer(const PairBatches *d, const TrainEnv *env) {
    if (objective_check_tokenizer(env, env->cfg->data.train, d->train.tokenizer,
                                  d->train.vocab_size) != 0)
        return -1;
    return d->have_val_ds ? objective_check_tokenizer(env, env->cfg->data.val, d->val.tokenizer,
                                                      d->val.vocab_size)
                          : 0;
}

static void describe_loader(const char *what, const PrefLoader *pl, int T) {
    printf("%s: %lld of %lld pairs kept, %lld dropped (the prompt alone fills the %d tokens of "
           "a row, as TRL 1.x drops it), %lld truncated to fit\n",
           what, (long long)pl->count, (long long)pl->range, (long long)pl->n_dropped, T + 1,
           (long long)pl->n_truncated);
}

void pair_batches_describe(const PairBatches *d, const TrainEnv *env) {
    printf("pref data: prompt/response boundary %s", d->train.boundary);
    if (!strcmp(d->train.boundary, "separate"))
        printf(" (each encoded on its own, TRL 0.x; `retort data build` now defaults to joint, "
               "TRL 1.x)");
    printf("\n");
    describe_loader("training pairs", &d->dl, env->T);
    if (d->have_val) describe_loader("validation pairs", &d->val_dl, env->T);
}

void pair_batches_close(PairBatches *d) {
    if (d->pack) pair_packer_free(&d->packer);
    free(d->pk_in);
    free(d->pk_logp);
    free(d->pk_scratch);
    free(d->pk_ids);
    pref_loader_free(&d->dl);
    if (d->have_val) pref_loader_free(&d->val_dl);
    pref_dataset_close(&d->train);
    if (d->have_val_ds) pref_dataset_close(&d->val);
    void *bufs[] = {d->inputs, d->targets, d->items, d->loc_in, d->loc_tg, d->logp, d->g};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    memset(d, 0, sizeof *d);
}

/* Rows of this rank's B pairs out of a global micro-batch of world * B pairs
 * (chosen rows [0, GB), rejected rows [GB, 2 GB)) into the local layout
 * (chosen [0, B), rejected [B, 2B)). */
static void local_pairs(const TrainEnv *env, const int *global, int *loc) {
    size_t T = (size_t)env->T, B = (size_t)env->B, GB = B * env->world, r = (size_t)env->rank;
    memcpy(loc, global + r * B * T, B * T * sizeof(int));
    memcpy(loc + B * T, global + (GB + r * B) * T, B * T * sizeof(int));
}

void pair_batches_forward(PairBatches *d, const TrainEnv *env, GPT *model, const int *in,
                          const int *tg, int n_pairs, float *logp) {
    int T = env->T;
    if (!d->pk_active) {
        gpt_forward(model, in, tg, 2 * n_pairs, T, logp);
        return;
    }
    size_t NP = (size_t)2 * env->B * T;
    for (size_t i = 0; i < NP; i++) d->pk_tg[i] = d->pk_map[i] >= 0 ? tg[d->pk_map[i]] : -1;
    if (gpt_set_packing(model, d->pk_ds, 2 * env->B, T) != 0) {
        fprintf(stderr, "retort: data.pack: %s\n", err_msg()); /* the packer's own layout */
        exit(1);
    }
    gpt_forward(model, d->pk_in, d->pk_tg, 2 * env->B, T, d->pk_logp);
    memset(logp, 0, (size_t)2 * n_pairs * T * sizeof(float));
    for (size_t i = 0; i < NP; i++)
        if (d->pk_map[i] >= 0) logp[d->pk_map[i]] = d->pk_logp[i];
}

void pair_batches_backward(PairBatches *d, const TrainEnv *env, GPT *model, const float *g,
                           int n_pairs) {
    (void)n_pairs;
    if (!d->pk_active) {
        gpt_backward(model, g);
        return;
    }
    size_t NP = (size_t)2 * env->B * env->T;
    for (size_t i = 0; i < NP; i++) d->pk_g[i] = d->pk_map[i] >= 0 ? g[d->pk_map[i]] : 0.0f;
    gpt_backward(model, d->pk_g);
}

void pair_batches_seek(PairBatches *d, int64_t epoch, int64_t pos) {
    if (d->pack) pair_packer_seek(&d->packer, epoch, pos);
    else pref_loader_seek(&d->dl, epoch, pos);
}

void pair_batches_position(const PairBatches *d, int64_t *epoch, int64_t *pos) {
    if (d->pack) {
        pair_packer_position(&d->packer, epoch, pos);
        return;
    }
    *epoch = d->dl.epoch;
    *pos = d->dl.pos;
}

/* data.pack: one step of A micro-batches, each rank's group cut from the
 * stream after those of the ranks before it (every rank packs them all, so
 * the loaders stay together), the method on this rank's. */
static double packed_step(PairBatches *d, const TrainEnv *env, PairLossFn loss_fn, void *self,
                          int n_metrics, double *metrics) {
    int W = env->world, A = env->A, T = env->T, rows = 2 * env->B;
    size_t NP = (size_t)rows * T, NU = (size_t)2 * d->max_pairs * T;
    int *s = d->pk_scratch; /* another rank's group, thrown away */
    double loss = 0;
    for (int a = 0; a < A; a++) {
        int K = 0;
        for (int r = 0; r < W; r++) {
            if (r == env->rank)
                K = pair_packer_next(&d->packer, rows, d->pk_in, d->pk_tg, d->pk_ds, d->pk_map,
                                     d->loc_in, d->loc_tg, d->pk_ids);
            else
                pair_packer_next(&d->packer, rows, s, s + NP, s + 2 * NP, s + 3 * NP,
                                 s + 4 * NP, s + 4 * NP + NU, d->pk_ids + d->max_pairs);
        }
        double m[OBJECTIVE_MAX_METRICS] = {0};
        d->pk_active = 1;
        loss += loss_fn(self, env, &d->train, d->loc_in, d->loc_tg, d->pk_ids, K, 1.0 / (A * W),
                        1, m) / A;
        d->pk_active = 0;
        objective_metrics_add(metrics, m, 1.0 / A, n_metrics);
    }
    for (int k = 0; k < n_metrics; k++) metrics[k] = dist_sum_f64(metrics[k]) / W;
    return dist_sum_f64(loss) / W;
}

double pair_batches_step(PairBatches *d, const TrainEnv *env, PairLossFn loss_fn, void *self,
                         int n_metrics, double *metrics) {
    if (d->pack) return packed_step(d, env, loss_fn, self, n_metrics, metrics);
    int N = 2 * env->B * env->T, GB = env->world * env->B, W = env->world, A = env->A;
    for (int a = 0; a < A; a++)
        pref_loader_next(&d->dl, GB, d->inputs + (size_t)a * N * W,
                         d->targets + (size_t)a * N * W, d->items + (size_t)a * GB);
    double loss = 0;
    for (int a = 0; a < A; a++) {
        double m[OBJECTIVE_MAX_METRICS] = {0};
        local_pairs(env, d->inputs + (size_t)a * N * W, d->loc_in);
        local_pairs(env, d->targets + (size_t)a * N * W, d->loc_tg);
        /* the global micro-batch loss is the mean of the ranks' pair means */
        loss += loss_fn(self, env, &d->train, d->loc_in, d->loc_tg,
                        d->items + (size_t)a * GB + (size_t)env->rank * env->B, env->B,
                        1.0 / (A * W), 1, m) / A;
        objective_metrics_add(metrics, m, 1.0 / A, n_metrics);
    }
    for (int k = 0; k < n_metrics; k++) metrics[k] = dist_sum_f64(metrics[k]) / W;
    return dist_sum_f64(loss) / W;
}

double pair_batches_eval(PairBatches *d, const TrainEnv *env, PairLossFn loss_fn, void *self,
                         int n_metrics, double *metrics) {
    if (!d->have_val) return NAN;
    PrefLoader *pl = &d->val_dl;
    const PrefDataset *pd = d->have_val_ds ? &d->val : &d->train;
    pref_loader_seek(pl, 0, 0);
    double loss = 0, sum[OBJECTIVE_MAX_METRICS] = {0};
    int n = 0;
    for (int b = 0; b < env->cfg->eval.batches; b++) {
        double m[OBJECTIVE_MAX_METRICS] = {0};
        pref_loader_next(pl, env->B, d->inputs, d->targets, d->items);
        loss += loss_fn(self, env, pd, d->inputs, d->targets, d->items, env->B, 0, 0, m);
        objective_metrics_add(sum, m, 1.0, n_metrics);
        n++;
        if (pl->epoch > 0) break; /* the validation set is smaller than eval.batches */
    }
    for (int k = 0; k < n_metrics; k++) metrics[k] = 0;
    objective_metrics_add(metrics, sum, 1.0 / n, n_metrics);
    return loss / n;
}

void pref_row_sums(const float *logp, const int *targets, int rows, int T, double *sums,
                   int64_t *counts) {
    for (int r = 0; r < rows; r++) {
        const float *lp = logp + (size_t)r * T;  /* (T) */
        const int *tg = targets + (size_t)r * T; /* (T) */
        double s = 0;
        int64_t k = 0;
        for (int j = 0; j < T; j++) {
            if (tg[j] >= 0) {
                s += lp[j];
                k++;
            }
        }
        sums[r] = s;
        counts[r] = k;
    }
}
