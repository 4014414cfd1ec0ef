/* train/objectives/seq_batches.c — sequence data for lm and kd (see
 * seq_batches.h). */
#include "train/objectives/seq_batches.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/dist.h"
#include "train/objectives/lm.h"

/* data.role: one role's examples (GLPFT local stages), the validation split
 * taken from the end of that role's examples. */
static int open_role(SeqBatches *d, const TrainEnv *env) {
    const Config *c = env->cfg;
    int64_t *sel = NULL, n = 0, n_val = 0;
    if (d->train_ds.schema == SCHEMA_LM)
        return err_set("%s: data.role needs an sft or kd file with a role column",
                       c->data.train);
    if (dataset_role_items(&d->train_ds, c->data.role, &sel, &n) != 0) return -1;
    int rc = 0;
    if (c->data.val[0]) {
        rc = err_set("data.role with a separate data.val file: give the validation file's "
                     "examples of that role a file of their own, or use data.val_fraction");
    } else if (c->data.val_fraction > 0) {
        n_val = (int64_t)(n * c->data.val_fraction);
        if (n_val < 1) n_val = 1;
        if (n_val >= n)
            rc = err_set("%s: role '%s' has %lld examples, too few to hold out "
                         "data.val_fraction=%g", c->data.train, c->data.role, (long long)n,
                         c->data.val_fraction);
        else if (loader_init_subset(&d->val_dl, &d->train_ds, env->T, 0, 0, sel + n - n_val,
                                    n_val) == 0)
            d->have_val = 1;
        else
            rc = -1;
    }
    if (rc == 0)
        rc = loader_init_subset(&d->train_dl, &d->train_ds, env->T, (uint64_t)c->train.seed,
                                c->data.shuffle, sel, n - n_val);
    free(sel);
    return rc;
}

static int open_loaders(SeqBatches *d, const TrainEnv *env) {
    const Config *c = env->cfg;
    int T = env->T;
    if (dataset_open(&d->train_ds, c->data.train) != 0) return -1;
    if (!c->model.init[0] && d->train_ds.vocab_size > c->model.vocab_size)
        return err_set("%s: dataset vocab_size %d exceeds model.vocab_size %d; token ids would "
                       "be out of range (build the data with the model's tokenizer or raise "
                       "model.vocab_size)",
                       c->data.train, d->train_ds.vocab_size, c->model.vocab_size);
    if (c->data.role[0]) return open_role(d, env);
    int64_t items = dataset_num_items(&d->train_ds, T);
    int64_t n_val = 0;
    if (c->data.val[0]) {
        if (dataset_open(&d->val_ds, c->data.val) != 0) return -1;
        d->have_val_ds = 1;
        if (!c->model.init[0] && d->val_ds.vocab_size > c->model.vocab_size)
            return err_set("%s: dataset vocab_size %d exceeds model.vocab_size %d", c->data.val,
                           d->val_ds.vocab_size, c->model.vocab_size);
        if (loader_init(&d->val_dl, &d->val_ds, T, 0, 0, 0, dataset_num_items(&d->val_ds, T)) !=
            0)
            return -1;
        d->have_val = 1;
    } else if (c->data.val_fraction > 0) {
        n_val = (int64_t)(items * c->data.val_fraction);
        if (n_val < 1) n_val = 1;
        if (n_val >= items)
            return err_set("%s: %lld items at seq_len %d are too few to hold out "
                           "data.val_fraction=%g for validation",
                           c->data.train, (long long)items, T, c->data.val_fraction);
        if (loader_init(&d->val_dl, &d->train_ds, T, 0, 0, items - n_val, n_val) != 0) return -1;
        d->have_val = 1;
    }
    return loader_init(&d->train_dl, &d->train_ds, T, (uint64_t)c->train.seed, c->data.shuffle,
                       0, items - n_val);
}

int seq_batches_open(SeqBatches *d, const TrainEnv *env) {
    memset(d, 0, sizeof *d);
    size_t N = (size_t)env->B * env->T, GN = N * env->world;
    d->inputs = xmalloc((size_t)env->A * GN * sizeof(int));
    d->targets = xmalloc((size_t)env->A * GN * sizeof(int));
    d->items = xmalloc((size_t)env->A * env->world * env->B * sizeof(int64_t));
    d->logp = xmalloc(N * sizeof(float));
    d->g = xmalloc(N * sizeof(float));
    return open_loaders(d, env);
}

int seq_batches_check_tokenizer(const SeqBatches *d, const TrainEnv *env) {
    if (objective_check_tokenizer(env, env->cfg->data.train, d->train_ds.tokenizer,
                                  d->train_ds.vocab_size) != 0)
        return -1;
    return d->have_val_ds ? objective_check_tokenizer(env, env->cfg->data.val,
                                                      d->val_ds.tokenizer, d->val_ds.vocab_size)
                          : 0;
}

static void describe_loader(const char *what, const DataLoader *dl) {
    printf("%s: %lld of %lld examples truncated to the %d tokens of a row (their end is cut), "
           "none dropped\n",
           what, (long long)loader_count_truncated(dl), (long long)dl->count, dl->T + 1);
}

void seq_batches_describe(const SeqBatches *d, const TrainEnv *env) {
    const Dataset *ds = &d->train_ds;
    if (ds->schema == SCHEMA_LM) {
        int64_t windows = dataset_num_items(ds, env->T);
        printf("lm data: %lld windows of %d tokens; the last %lld tokens of the stream fill no "
               "window and are not trained on\n",
               (long long)windows, env->T + 1,
               (long long)(ds->n_tokens - windows * (int64_t)env->T - (windows > 0)));
        return;
    }
    describe_loader("training examples", &d->train_dl);
    if (d->have_val) describe_loader("validation examples", &d->val_dl);
}

void seq_batches_close(SeqBatches *d) {
    loader_free(&d->train_dl);
    if (d->have_val) loader_free(&d->val_dl);
    dataset_close(&d->train_ds);
    if (d->have_val_ds) dataset_close(&d->val_ds);
    free(d->inputs);
    free(d->targets);
    free(d->items);
    free(d->logp);
    free(d->g);
    memset(d, 0, sizeof *d);
}

void seq_batches_draw(SeqBatches *d, const TrainEnv *env) {
    size_t GB = (size_t)env->world * env->B, GN = GB * env->T;
    for (int a = 0; a < env->A; a++)
        loader_next_items(&d->train_dl, (int)GB, d->inputs + a * GN, d->targets + a * GN,
                          d->items + a * GB);
}

int *seq_batches_local(const SeqBatches *d, const TrainEnv *env, int *base, int a) {
    (void)d;
    size_t N = (size_t)env->B * env->T;
    return base + (size_t)a * N * env->world + (size_t)env->rank * N;
}

double seq_batches_step_targets(const SeqBatches *d, const TrainEnv *env) {
    int64_t local = 0;
    for (int a = 0; a < env->A; a++)
        local += lm_count_targets(seq_batches_local(d, env, d->targets, a),
                                  (int64_t)env->B * env->T);
    return (double)dist_sum_i64(local);
}

double seq_batches_eval(SeqBatches *d, const TrainEnv *env) {
    if (!d->have_val) return NAN;
    DataLoader *dl = &d->val_dl;
    int N = env->B * env->T;
    loader_seek(dl, 0, 0);
    double loss_sum = 0;
    int64_t count = 0;
    for (int b = 0; b < env->cfg->eval.batches; b++) {
        loader_next(dl, env->B, d->inputs, d->targets);
        gpt_forward(env->model, d->inputs, d->targets, env->B, env->T, d->logp);
        for (int i = 0; i < N; i++)
            if (d->targets[i] >= 0) {
                loss_sum -= d->logp[i];
                count++;
            }
        if (dl->epoch > 0) break; /* the validation set is smaller than eval.batches */
    }
    return count ? loss_sum / (double)count : NAN;
}
