/* train/steps.c — what one optimizer step does for each objective, and the
 * data and second models each objective needs.
 *
 *   lm  : LM/SFT cross-entropy (train/objectives/lm.c); kd files train here
 *         too, as SFT on the teacher's outputs (sequence-level KD).
 *   kd  : (1 - alpha) CE(gold) + alpha T^2 D_beta(teacher_T || student_T)
 *         per target token, both normalised by the step's target tokens. The
 *         teacher is a frozen model run forward on the same rows (online) or
 *         the dataset's stored top-K (offline). With kd.on_policy = lambda, a
 *         step's completions are, with probability lambda, sampled from the
 *         student first (GKD): each row keeps its prompt (the tokens before
 *         its first target) and the student continues it.
 *   dpo : TRL's losses on per-pair sums of completion log-probs
 *         (train/objectives/dpo.c); the reference is a frozen model or the
 *         dataset's precomputed ref_logp_*. A micro-batch of B pairs is 2B
 *         rows; each micro-batch's loss is its pair mean, and a step averages
 *         its micro-batches (as TRL does with gradient accumulation).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/generate.h"
#include "train/dist.h"
#include "model/model_io.h"
#include "train/objectives/lm.h"
#include "train/trainer_impl.h"

/* ------------------------------------------------------------------- data */

static int open_lm_data(Trainer *t) {
    const Config *c = t->cfg;
    if (dataset_open(&t->train_ds, c->data.train) != 0) return -1;
    if (t->train_ds.vocab_size > c->model.vocab_size)
        return err_set("%s: dataset vocab_size %d exceeds model.vocab_size %d; token ids would "
                       "be out of range (build the data with the model's tokenizer or raise "
                       "model.vocab_size)",
                       c->data.train, t->train_ds.vocab_size, c->model.vocab_size);
    int64_t items = dataset_num_items(&t->train_ds, t->T);
    int64_t n_val = 0;
    if (c->data.role[0]) { /* one role's examples (GLPFT local stages) */
        int64_t *sel = NULL, n = 0;
        if (t->train_ds.schema == SCHEMA_LM)
            return err_set("%s: data.role needs an sft or kd file with a role column",
                           c->data.train);
        if (dataset_role_items(&t->train_ds, c->data.role, &sel, &n) != 0) return -1;
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
            else if (loader_init_subset(&t->val_dl, &t->train_ds, t->T, 0, 0, sel + n - n_val,
                                        n_val) == 0)
                t->have_val = 1;
            else
                rc = -1;
        }
        if (rc == 0)
            rc = loader_init_subset(&t->train_dl, &t->train_ds, t->T, (uint64_t)c->train.seed,
                                    c->data.shuffle, sel, n - n_val);
        free(sel);
        return rc;
    }
    if (c->data.val[0]) {
        if (dataset_open(&t->val_ds, c->data.val) != 0) return -1;
        t->have_val_ds = 1;
        if (t->val_ds.vocab_size > c->model.vocab_size)
            return err_set("%s: dataset vocab_size %d exceeds model.vocab_size %d", c->data.val,
                           t->val_ds.vocab_size, c->model.vocab_size);
        if (loader_init(&t->val_dl, &t->val_ds, t->T, 0, 0, 0,
                        dataset_num_items(&t->val_ds, t->T)) != 0)
            return -1;
        t->have_val = 1;
    } else if (c->data.val_fraction > 0) {
        n_val = (int64_t)(items * c->data.val_fraction);
        if (n_val < 1) n_val = 1;
        if (n_val >= items)
            return err_set("%s: %lld items at seq_len %d are too few to hold out "
                           "data.val_fraction=%g for validation",
                           c->data.train, (long long)items, t->T, c->data.val_fraction);
        if (loader_init(&t->val_dl, &t->train_ds, t->T, 0, 0, items - n_val, n_val) != 0)
            return -1;
        t->have_val = 1;
    }
    return loader_init(&t->train_dl, &t->train_ds, t->T, (uint64_t)c->train.seed,
                       c->data.shuffle, 0, items - n_val);
}

static int open_pref_data(Trainer *t) {
    const Config *c = t->cfg;
    Schema s;
    if (dataset_peek_schema(c->data.train, &s) != 0) return -1;
    if (s != SCHEMA_PREF)
        return err_set("%s: objective dpo trains on preference pairs (schema pref), but this "
                       "file is '%s'; build one with `retort data build --schema pref` or "
                       "`retort pairs`",
                       c->data.train, schema_name(s));
    if (pref_dataset_open(&t->pref_train, c->data.train) != 0) return -1;
    if (t->pref_train.vocab_size > c->model.vocab_size)
        return err_set("%s: dataset vocab_size %d exceeds model.vocab_size %d", c->data.train,
                       t->pref_train.vocab_size, c->model.vocab_size);
    int mp = c->dpo.max_prompt_len, mc = c->dpo.max_completion_len;
    int64_t n = t->pref_train.n_pairs, n_val = 0;
    if (c->data.val[0]) {
        if (pref_dataset_open(&t->pref_val, c->data.val) != 0) return -1;
        t->have_pref_val_ds = 1;
        if (pref_loader_init(&t->pref_val_dl, &t->pref_val, t->T, mp, mc, 0, 0, 0,
                             t->pref_val.n_pairs) != 0)
            return -1;
        t->have_val = 1;
    } else if (c->data.val_fraction > 0) {
        n_val = (int64_t)(n * c->data.val_fraction);
        if (n_val < 1) n_val = 1;
        if (n_val >= n)
            return err_set("%s: %lld pairs are too few to hold out data.val_fraction=%g",
                           c->data.train, (long long)n, c->data.val_fraction);
        if (pref_loader_init(&t->pref_val_dl, &t->pref_train, t->T, mp, mc, 0, 0, n - n_val,
                             n_val) != 0)
            return -1;
        t->have_val = 1;
    }
    return pref_loader_init(&t->pref_dl, &t->pref_train, t->T, mp, mc, (uint64_t)c->train.seed,
                            c->data.shuffle, 0, n - n_val);
}

void data_position(const Trainer *t, int64_t *epoch, int64_t *pos) {
    *epoch = t->obj == OBJ_DPO ? t->pref_dl.epoch : t->train_dl.epoch;
    *pos = t->obj == OBJ_DPO ? t->pref_dl.pos : t->train_dl.pos;
}

void data_seek(Trainer *t, int64_t epoch, int64_t pos) {
    if (t->obj == OBJ_DPO) pref_loader_seek(&t->pref_dl, epoch, pos);
    else loader_seek(&t->train_dl, epoch, pos);
}

int64_t train_items(const Trainer *t) {
    return t->obj == OBJ_DPO ? t->pref_dl.count : t->train_dl.count;
}

/* ------------------------------------------------------------- second models */

/* A frozen model for forward passes only, checked against the student. */
static GPT *load_frozen(Trainer *t, const char *dir, const char *what) {
    GPT *m = model_load_hf(dir, t->be);
    if (!m) return NULL;
    gpt_set_logits_chunk(m, t->cfg->train.logits_chunk_rows);
    const GPTConfig *a = gpt_config(m), *b = gpt_config(t->model);
    if (a->vocab_size != b->vocab_size || a->n_positions < t->T) {
        err_set("%s %s: vocab_size %d and n_positions %d; the student has vocab_size %d and "
                "trains on seq_len %d (the %s needs the same vocabulary and at least that "
                "context)",
                what, dir, a->vocab_size, a->n_positions, b->vocab_size, t->T, what);
        gpt_free(m);
        return NULL;
    }
    gpt_set_trainable(m, (const char *const[]){"*"}, 1, NULL, 0);
    gpt_set_train_mode(m, 0);
    return m;
}

int steps_setup(Trainer *t) {
    const Config *c = t->cfg;
    size_t N = (size_t)t->rows * t->T, GN = N * t->world;
    t->inputs = xmalloc((size_t)t->A * GN * sizeof(int));
    t->targets = xmalloc((size_t)t->A * GN * sizeof(int));
    t->items = xmalloc((size_t)t->A * t->world * t->B * sizeof(int64_t));
    t->loc_in = xmalloc(N * sizeof(int));
    t->loc_tg = xmalloc(N * sizeof(int));
    t->logp = xmalloc(N * sizeof(float));
    t->g = xmalloc(N * sizeof(float));
    if (t->obj == OBJ_KD) {
        t->w = xmalloc(N * sizeof(float));
        t->kd = xmalloc(N * sizeof(float));
        t->agree = xmalloc(N * sizeof(float));
        if (c->kd.teacher[0]) {
            if (!(t->teacher = load_frozen(t, c->kd.teacher, "teacher"))) return -1;
        } else {
            if (t->train_ds.topk == 0)
                return err_set("%s has no teacher_topk_* (offline teacher) and kd.teacher is "
                               "empty; set kd.teacher to a checkpoint, or build the data with "
                               "`retort generate --store-topk K`",
                               c->data.train);
            size_t K = (size_t)t->train_ds.topk;
            t->topk_ids = xmalloc(N * K * sizeof(int));
            t->topk_logp = xmalloc(N * K * sizeof(float));
        }
    }
    if (t->obj == OBJ_DPO) {
        t->sums = xmalloc((size_t)t->rows * sizeof(double));
        t->ref_sums = xcalloc((size_t)t->rows, sizeof(double));
        t->counts = xmalloc((size_t)t->rows * sizeof(int64_t));
        t->pairs = xmalloc((size_t)t->B * sizeof(DpoPair));
        t->dlogp_c = xmalloc((size_t)t->B * sizeof(double));
        t->dlogp_r = xmalloc((size_t)t->B * sizeof(double));
        DpoLossType type;
        if (dpo_loss_type_from_name(c->dpo.loss_type, &type) != 0) return -1;
        const char *ref = c->dpo.reference[0] ? c->dpo.reference : c->model.init;
        if (type == DPO_ROBUST && c->dpo.label_smoothing == 0 && !t->opt->quiet)
            printf("note: dpo.loss_type robust with dpo.label_smoothing 0 is exactly the sigmoid "
                   "loss; set label_smoothing to the assumed label-noise rate\n");
        if (type == DPO_SIMPO) {
            /* reference-free */
        } else if (!strcmp(ref, "precomputed")) {
            if (!t->pref_train.ref_logp_chosen || !t->pref_train.ref_logp_rejected)
                return err_set("%s: dpo.reference is \"precomputed\" but the file has no "
                               "ref_logp_chosen / ref_logp_rejected; run `retort dpo "
                               "precompute-ref` on it first",
                               c->data.train);
            if (t->have_pref_val_ds && !t->pref_val.ref_logp_chosen)
                return err_set("%s: the validation file has no precomputed reference log-probs",
                               c->data.val);
            const PrefDataset *pd = &t->pref_train;
            if (pd->ref_seq_len >= 0 &&
                (pd->ref_seq_len != t->T || pd->ref_max_prompt_len != c->dpo.max_prompt_len ||
                 pd->ref_max_completion_len != c->dpo.max_completion_len))
                return err_set("%s: the reference log-probs were computed for seq_len %d, "
                               "max_prompt_len %d, max_completion_len %d, but this run uses %d, "
                               "%d, %d; rerun `retort dpo precompute-ref` with the run's values",
                               c->data.train, pd->ref_seq_len, pd->ref_max_prompt_len,
                               pd->ref_max_completion_len, t->T, c->dpo.max_prompt_len,
                               c->dpo.max_completion_len);
        } else if (!ref[0]) {
            return err_set("objective dpo needs a reference model: start from a checkpoint "
                           "(model.init, which is also the reference) or set dpo.reference");
        } else if (!(t->ref = load_frozen(t, ref, "reference model"))) {
            return -1;
        }
    }
    return 0;
}

void steps_free(Trainer *t) {
    gpt_free(t->teacher);
    gpt_free(t->ref);
    if (t->obj == OBJ_DPO) {
        pref_loader_free(&t->pref_dl);
        if (t->have_val) pref_loader_free(&t->pref_val_dl);
        pref_dataset_close(&t->pref_train);
        if (t->have_pref_val_ds) pref_dataset_close(&t->pref_val);
    } else {
        loader_free(&t->train_dl);
        if (t->have_val) loader_free(&t->val_dl);
        dataset_close(&t->train_ds);
        if (t->have_val_ds) dataset_close(&t->val_ds);
    }
    void *bufs[] = {t->inputs,  t->targets,  t->items,    t->logp,   t->g, t->loc_in, t->loc_tg,
                    t->w,       t->kd,       t->agree,    t->topk_ids, t->topk_logp,
                    t->sums,    t->ref_sums, t->counts,   t->pairs,  t->dlogp_c,
                    t->dlogp_r};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
}

int trainer_open_data(Trainer *t) {
    return t->obj == OBJ_DPO ? open_pref_data(t) : open_lm_data(t);
}

/* -------------------------------------------------------------------- lm */

/* This rank's rows of micro-batch a (lm, kd): the global micro-batch is
 * world * B sequences, this rank's are [rank * B, (rank + 1) * B). */
static int *local_rows(Trainer *t, int *base, int a) {
    size_t N = (size_t)t->rows * t->T;
    return base + (size_t)a * N * t->world + (size_t)t->rank * N;
}

/* Target tokens of the whole optimizer step over every rank. */
static double step_targets(Trainer *t) {
    int64_t local = 0;
    for (int a = 0; a < t->A; a++)
        local += lm_count_targets(local_rows(t, t->targets, a), (int64_t)t->rows * t->T);
    return (double)dist_sum_i64(local);
}

static void lm_step(Trainer *t, StepStats *st) {
    int N = t->rows * t->T, GB = t->world * t->B;
    for (int a = 0; a < t->A; a++)
        loader_next(&t->train_dl, GB, t->inputs + (size_t)a * N * t->world,
                    t->targets + (size_t)a * N * t->world);
    double D = step_targets(t);
    for (int a = 0; a < t->A; a++) {
        const int *in = local_rows(t, t->inputs, a), *tg = local_rows(t, t->targets, a);
        gpt_forward(t->model, in, tg, t->B, t->T, t->logp);
        st->loss += lm_loss_and_weights(t->logp, tg, N, D, t->g);
        gpt_backward(t->model, t->g);
    }
    st->loss = dist_sum_f64(st->loss); /* each rank holds its share of the step's mean */
}

/* -------------------------------------------------------------------- kd */

/* GKD on-policy: each row keeps its prompt (the tokens up to its first
 * target) and the student samples the rest (temperature 1, to EOS or the end
 * of the row); targets become the sampled tokens. */
static void student_completions(Trainer *t, int *inputs, int *targets) {
    int T = t->T, eos = t->train_ds.eos_id;
    SampleOptions so = {0, 1.0, 0, 1.0, eos, NULL, NULL};
    int *row = xmalloc((size_t)(T + 1) * sizeof(int));
    gpt_set_train_mode(t->model, 0);
    for (int b = 0; b < t->B; b++) {
        int *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        int p = 0; /* prompt length: tokens before the first target */
        while (p < T && tg[p] < 0) p++;
        if (p == T) continue; /* no completion in this row */
        p++;                  /* inputs[0..p) predict the first completion token */
        memcpy(row, in, (size_t)p * sizeof(int));
        so.max_new_tokens = T + 1 - p;
        int n = generate_sample(t->model, row, p, &so, &t->sample_rng);
        for (int j = 0; j < T; j++) {
            in[j] = j < n ? row[j] : eos;
            tg[j] = j >= p - 1 && j + 1 < n ? row[j + 1] : -1;
        }
    }
    gpt_set_train_mode(t->model, 1);
    free(row);
}

static void kd_step(Trainer *t, StepStats *st) {
    const Config *c = t->cfg;
    int N = t->rows * t->T, K = t->train_ds.topk, GB = t->world * t->B;
    for (int a = 0; a < t->A; a++)
        loader_next_items(&t->train_dl, GB, t->inputs + (size_t)a * N * t->world,
                          t->targets + (size_t)a * N * t->world, t->items + (size_t)a * GB);
    /* the coin is the same on every rank (t->rng advances identically) */
    if (c->kd.on_policy > 0 && rng_uniform(&t->rng) < c->kd.on_policy) {
        st->on_policy = 1;
        for (int a = 0; a < t->A; a++)
            student_completions(t, local_rows(t, t->inputs, a), local_rows(t, t->targets, a));
    }
    double D = step_targets(t);
    double alpha = c->kd.alpha, T2 = c->kd.temperature * c->kd.temperature;
    float gw = D > 0 ? (float)(-(1 - alpha) / D) : 0.0f, kw = D > 0 ? (float)(alpha * T2 / D) : 0.0f;
    KdTeacher teacher = {t->teacher, t->topk_ids, t->topk_logp, t->teacher ? 0 : K,
                         (float)c->kd.temperature, (float)c->kd.beta};
    double ce = 0, kd = 0, agree = 0;
    for (int a = 0; a < t->A; a++) {
        const int *in = local_rows(t, t->inputs, a), *tg = local_rows(t, t->targets, a);
        gpt_forward(t->model, in, tg, t->B, t->T, t->logp);
        if (t->teacher) {
            gpt_forward(t->teacher, in, tg, t->B, t->T, NULL);
        } else {
            for (int b = 0; b < t->B; b++)
                dataset_topk_row(&t->train_ds, t->items[(size_t)a * GB + (size_t)t->rank * t->B + b],
                                 t->T,
                                 t->topk_ids + (size_t)b * t->T * K,
                                 t->topk_logp + (size_t)b * t->T * K);
        }
        gpt_kd_forward(t->model, &teacher, t->kd, t->agree);
        for (int i = 0; i < N; i++) {
            int on = tg[i] >= 0;
            t->g[i] = on ? gw : 0.0f;
            t->w[i] = on ? kw : 0.0f;
            if (on) {
                ce -= t->logp[i];
                kd += t->kd[i];
                agree += t->agree[i];
            }
        }
        gpt_backward_kd(t->model, t->g, &teacher, t->w);
    }
    if (D > 0) {
        st->ce = dist_sum_f64(ce) / D;
        st->kd = dist_sum_f64(kd) / D;
        st->agree = dist_sum_f64(agree) / D;
    }
    st->loss = (1 - alpha) * st->ce + alpha * T2 * st->kd;
}

/* -------------------------------------------------------------------- dpo */

static DpoParams dpo_params(const Config *c) {
    DpoParams p = {DPO_SIGMOID, c->dpo.beta, c->dpo.label_smoothing, c->dpo.rpo_alpha,
                   c->dpo.simpo_gamma};
    dpo_loss_type_from_name(c->dpo.loss_type, &p.type); /* checked in steps_setup */
    return p;
}

/* Reference sums of the 2B rows: the reference model's forward, or the
 * precomputed per-pair values of pd (for simpo, zeros: it needs none). */
static void reference_sums(Trainer *t, const PrefDataset *pd, const int *in, const int *tg,
                           const int64_t *pair_ids) {
    int B = t->B;
    if (t->ref) {
        gpt_forward(t->ref, in, tg, t->rows, t->T, t->logp);
        int64_t *scratch = xmalloc((size_t)t->rows * sizeof(int64_t));
        pref_row_sums(t->logp, tg, t->rows, t->T, t->ref_sums, scratch);
        free(scratch);
    } else if (pd->ref_logp_chosen && dpo_params(t->cfg).type != DPO_SIMPO) {
        for (int b = 0; b < B; b++) {
            t->ref_sums[b] = pd->ref_logp_chosen[pair_ids[b]];
            t->ref_sums[B + b] = pd->ref_logp_rejected[pair_ids[b]];
        }
    } else {
        memset(t->ref_sums, 0, (size_t)t->rows * sizeof(double));
    }
}

static void add_metrics(DpoMetrics *sum, const DpoMetrics *m, double w) {
    sum->rewards_chosen += w * m->rewards_chosen;
    sum->rewards_rejected += w * m->rewards_rejected;
    sum->rewards_accuracies += w * m->rewards_accuracies;
    sum->rewards_margins += w * m->rewards_margins;
    sum->logps_chosen += w * m->logps_chosen;
    sum->logps_rejected += w * m->logps_rejected;
    sum->nll_loss += w * m->nll_loss;
}

/* One micro-batch of B pairs already in in/tg: loss, metrics, and (when g is
 * not NULL) the backward pass with weight scale. */
static double dpo_micro(Trainer *t, GPT *policy, const PrefDataset *pd, const int *in,
                        const int *tg, const int64_t *pair_ids, double scale, int backward,
                        DpoMetrics *m) {
    DpoParams p = dpo_params(t->cfg);
    gpt_forward(policy, in, tg, t->rows, t->T, t->logp);
    pref_row_sums(t->logp, tg, t->rows, t->T, t->sums, t->counts);
    reference_sums(t, pd, in, tg, pair_ids); /* reuses t->logp: the policy's sums are taken */
    dpo_pairs_from_rows(t->sums, t->ref_sums, t->counts, t->B, t->pairs);
    double loss = dpo_batch_loss(&p, t->pairs, t->B, t->dlogp_c, t->dlogp_r, m);
    if (backward) {
        dpo_spread_weights(t->dlogp_c, t->dlogp_r, t->B, t->T, tg, scale, t->g);
        gpt_backward(policy, t->g);
    }
    return loss;
}

/* Rows of this rank's B pairs out of a global micro-batch of world * B pairs
 * (chosen rows [0, GB), rejected rows [GB, 2 GB)) into the local layout
 * (chosen [0, B), rejected [B, 2B)). */
static void local_pairs(Trainer *t, const int *g, int *loc) {
    size_t T = (size_t)t->T, B = (size_t)t->B, GB = B * t->world, r = (size_t)t->rank;
    memcpy(loc, g + r * B * T, B * T * sizeof(int));
    memcpy(loc + B * T, g + (GB + r * B) * T, B * T * sizeof(int));
}

static void dpo_step(Trainer *t, StepStats *st) {
    int N = t->rows * t->T, GB = t->world * t->B, W = t->world;
    for (int a = 0; a < t->A; a++)
        pref_loader_next(&t->pref_dl, GB, t->inputs + (size_t)a * N * W,
                         t->targets + (size_t)a * N * W, t->items + (size_t)a * GB);
    for (int a = 0; a < t->A; a++) {
        DpoMetrics m;
        local_pairs(t, t->inputs + (size_t)a * N * W, t->loc_in);
        local_pairs(t, t->targets + (size_t)a * N * W, t->loc_tg);
        /* the global micro-batch loss is the mean of the ranks' pair means */
        st->loss += dpo_micro(t, t->model, &t->pref_train, t->loc_in, t->loc_tg,
                              t->items + (size_t)a * GB + (size_t)t->rank * t->B,
                              1.0 / (t->A * W), 1, &m) / t->A;
        add_metrics(&st->dpo, &m, 1.0 / t->A);
    }
    st->loss = dist_sum_f64(st->loss) / W;
    DpoMetrics *m = &st->dpo;
    double *fields[] = {&m->rewards_chosen, &m->rewards_rejected, &m->rewards_accuracies,
                        &m->rewards_margins, &m->logps_chosen, &m->logps_rejected, &m->nll_loss};
    for (size_t k = 0; k < sizeof fields / sizeof *fields; k++)
        *fields[k] = dist_sum_f64(*fields[k]) / W;
}

/* ------------------------------------------------------------------ steps */

void train_step(Trainer *t, StepStats *st) {
    memset(st, 0, sizeof *st);
    gpt_zero_grad(t->model);
    gpt_set_train_mode(t->model, 1);
    if (t->obj == OBJ_KD) kd_step(t, st);
    else if (t->obj == OBJ_DPO) dpo_step(t, st);
    else lm_step(t, st);
    t->tokens_seen += (int64_t)t->A * t->rows * t->T;
}

void eval_pass(Trainer *t, StepStats *st) {
    memset(st, 0, sizeof *st);
    st->loss = NAN;
    if (!t->have_val) return;
    gpt_set_train_mode(t->model, 0);
    int N = t->rows * t->T, batches = t->cfg->eval.batches;
    if (t->obj == OBJ_DPO) {
        PrefLoader *pl = &t->pref_val_dl;
        const PrefDataset *pd = t->have_pref_val_ds ? &t->pref_val : &t->pref_train;
        pref_loader_seek(pl, 0, 0);
        double loss = 0;
        int n = 0;
        for (int b = 0; b < batches; b++) {
            DpoMetrics m;
            pref_loader_next(pl, t->B, t->inputs, t->targets, t->items);
            loss += dpo_micro(t, t->model, pd, t->inputs, t->targets, t->items, 0, 0, &m);
            add_metrics(&st->dpo, &m, 1.0);
            n++;
            if (pl->epoch > 0) break; /* the validation set is smaller than eval.batches */
        }
        st->loss = loss / n;
        DpoMetrics mean = {0};
        add_metrics(&mean, &st->dpo, 1.0 / n);
        st->dpo = mean;
        return;
    }
    DataLoader *dl = &t->val_dl;
    loader_seek(dl, 0, 0);
    double loss_sum = 0;
    int64_t count = 0;
    for (int b = 0; b < batches; b++) {
        loader_next(dl, t->B, t->inputs, t->targets);
        gpt_forward(t->model, t->inputs, t->targets, t->B, t->T, t->logp);
        for (int i = 0; i < N; i++)
            if (t->targets[i] >= 0) {
                loss_sum -= t->logp[i];
                count++;
            }
        if (dl->epoch > 0) break;
    }
    st->loss = count ? loss_sum / (double)count : NAN;
}
