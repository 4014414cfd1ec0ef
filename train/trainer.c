/* train/trainer.c — the training loop: set-up (model, partial fine-tuning,
 * optimizer), steps, validation, logging, checkpoints, resume and signals.
 * What a step computes is the objective's (train/objectives/objective.h): the
 * trainer picks it from the registry by objective.type and knows none by name.
 *
 * One optimizer step = grad_accum micro-batches of (B,T). All micro-batches of
 * a step are drawn from the loader first, so the LM objective can normalise by
 * the number of target tokens in the whole step (accumulation then equals one
 * big batch exactly). The data position, RNG, optimizer moments and step count
 * go into every checkpoint, so a resumed CPU run reproduces the uninterrupted
 * run's losses bit for bit. With LoRA the checkpoint also holds the adapter
 * in PEFT form (adapter_model.safetensors + adapter_config.json) beside the
 * frozen base weights.
 *
 * Non-finite values never reach a checkpoint. The loss and the gradient norm
 * of every step are checked before the update (both are host values already,
 * and the same on every rank): a NaN or an infinity skips the update, and the
 * run stops naming the step and the first offending tensor (a per-tensor scan,
 * only then), unless train.skip_nonfinite allows skipping it. A finite update
 * can still overflow, so before every save the weights get one sum_squares
 * (optim_params_finite); non-finite ones stop the run instead of being saved,
 * at a periodic save, the last one and a stop by signal alike. A stopped run
 * exits non-zero and names the newest checkpoint, where --resume continues;
 * resume also passes over a checkpoint with non-finite weights as a damaged
 * one. metrics.jsonl writes null for a NaN or infinite number.
 *
 * Host <-> device synchronisations of one CUDA training step, LM objective on
 * one GPU (no LoRA dropout, every cached buffer already grown): 3 per
 * micro-step and 1 per optimizer step, 3A + 1 with data.grad_accum = A. (It
 * was 5A + 148 on GPT-2 124M: one per trainable tensor for the norm, one more
 * upload, and the encoder backward's download of the ids.) Each remaining one:
 *   per micro-step
 *     1. gpt_forward uploads inputs and targets in one copy (to_device returns
 *        when its host buffer may be reused). It also waits for the previous
 *        micro-step's backward; the host has nothing to queue before 2 anyway.
 *     2. gpt_forward downloads logp: the objective (loss, dLoss/dlogp) runs on
 *        the host (train/objectives).
 *     3. gpt_backward uploads g = dLoss/dlogp; the stream is idle after 2, so
 *        this one costs one small copy's latency.
 *     The encoder backward needs none: it groups positions by token id from
 *     the model's host copy of the ids (kernels/cuda/encoder.cu).
 *   per optimizer step
 *     4. optim_clip_grad_norm: ONE sum_squares over the whole fp32 gradient
 *        buffer (train/optim.c); the norm is logged and the clip coefficient
 *        formed on the host. gpt_zero_grad, the clip scale and the AdamW
 *        launches are asynchronous.
 * Other settings add theirs: with world > 1 the wait for the NCCL gradient
 * all-reduce (dist_wait polls its event, so a hung rank ends in a message)
 * and the host collectives dist_sum_* and dist_any (through the device when
 * NCCL runs without MPI); kd and dpo the teacher's or reference's forward and
 * their per-token side arrays (model_kd.c, train/objectives); LoRA dropout a download
 * and an upload per adapted layer (model_lora.c); evaluation, checkpoints
 * and a step whose buffers grow (first step) more.
 */
#include "train/trainer.h"

#include <assert.h>
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "model/backend.h"
#include "model/checkpoint.h"
#include "train/dist.h"
#include "train/grad_overlap.h"
#include "model/lora.h"
#include "model/model.h"
#include "model/model_io.h"
#include "train/optim.h"
#include "train/plan.h"
#include "train/tb.h"
#include "model/safetensors.h"
#include "train/best.h"
#include "train/objectives/objective.h"
#include "util/util.h"

/* The state of one training run. */
typedef struct {
    const Config *cfg;        /* resolved: train.steps set from train.epochs */
    const TrainOptions *opt;
    const Backend *be;
    const Objective *obj;     /* the method (objective.type) */
    void *state;              /* its state: obj->open's */
    const ObjectiveMetric *metric_table; /* its metrics for this run (objective_metrics) */
    int n_metrics, n_eval_metrics;
    TrainEnv env;             /* what the method is lent */
    RunTokenizer tokenizer;   /* env.tokenizer: settled by prepare, recorded in checkpoints */
    GPT *model;
    Optimizer *optim;
    GradOverlap *overlap;     /* dist.overlap: the reduction started during backward, or NULL */
    LrSchedule sched;
    int step;                 /* optimizer steps completed */
    int64_t tokens_seen;
    Rng rng;                  /* checkpointed; the objective draws from it (env.rng) */
    int B, T, A;              /* items per rank per micro-step, sequence length, accumulation */
    int rows;                 /* model rows per micro-batch: B * obj->rows_per_item */
    int rank, world;          /* data parallel: this rank of world (1 = single process) */
    int is_main, quiet;       /* rank 0; no console lines (options or rank > 0) */
    int skipped;              /* non-finite steps skipped (train.skip_nonfinite); checkpointed */
    FILE *metrics;
    TbWriter *tb;                    /* NULL unless train.tensorboard (rank 0 only) */
    const GenEvalHook *gen;   /* eval.generate_every's scorer (train_set_gen_eval), or NULL */
    BestTracker best;         /* eval.best_metric; checkpointed in trainer.json */
} Trainer;

/* What one optimizer step (or one validation pass) measured. */
typedef struct {
    double loss;              /* the loss that was optimized */
    double metrics[OBJECTIVE_MAX_METRICS]; /* the objective's, in its order */
} StepStats;

#define MAX_CKPTS 4096

static volatile sig_atomic_t stop_signals = 0;
static int stop_at_step = -1;
static const GenEvalHook *gen_eval_hook;

void train_set_gen_eval(const GenEvalHook *hook) { gen_eval_hook = hook; }

/* Test-only hooks (scripts/test_dist_train.sh), so that a signal or a hung rank
 * happens at a known step rather than at a moment a script guesses: on rank
 * RETORT_TEST_RANK (default 0), at the start of step RETORT_TEST_SIGNAL_AT_STEP
 * the process sends itself a real SIGTERM, and at the start of step
 * RETORT_TEST_STALL_AT_STEP it stops itself (SIGSTOP), as a hung rank would. */
static int test_rank, test_signal_at = -1, test_stall_at = -1;

static void on_signal(int sig) {
    (void)sig;
    if (stop_signals++ > 0) _exit(130); /* second signal: leave now */
}

void train_install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

void train_request_stop_at(int step) { stop_at_step = step; }


/* ---------------------------------------------------------------- checkpoints */

static int write_trainer_json(Trainer *t, const char *dir) {
    json_t *root = json_object();
    json_object_set_new(root, "step", json_integer(t->step));
    json_object_set_new(root, "tokens_seen", json_integer(t->tokens_seen));
    json_object_set_new(root, "nonfinite_skipped", json_integer(t->skipped));
    json_t *data = json_object();
    int64_t epoch, pos;
    t->obj->position(t->state, &epoch, &pos);
    json_object_set_new(data, "epoch", json_integer(epoch));
    json_object_set_new(data, "pos", json_integer(pos));
    json_t *detail = t->obj->save_position ? t->obj->save_position(t->state) : NULL;
    if (detail) json_object_set_new(data, "detail", detail); /* data.mix: each file's position */
    if (gpt_lora_config(t->model))
        json_object_set_new(root, "lora_dropout_step",
                            json_integer((json_int_t)gpt_lora_dropout_step(t->model)));
    json_object_set_new(root, "data", data);
    json_t *rng = json_array();
    for (int i = 0; i < 4; i++) {
        char hex[24];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)t->rng.s[i]);
        json_array_append_new(rng, json_string(hex));
    }
    json_object_set_new(root, "rng", rng);
    json_t *best = best_record(&t->best);
    if (best) json_object_set_new(root, "best", best);
    char *cfg_json = config_to_json(t->cfg);
    json_error_t jerr;
    json_t *cfg = json_loads(cfg_json, 0, &jerr);
    free(cfg_json);
    json_object_set_new(root, "config", cfg ? cfg : json_null());
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    char path[4096];
    if (path_join(path, sizeof path, dir, "trainer.json") != 0) return -1;
    int rc = write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}

/* optimizer.safetensors: per parameter its AdamW moments "m.<name>", "v.<name>"
 * and, when the parameters are lower precision (CUDA: bf16), the fp32 master
 * weights "master.<name>" that the update really works on. */
static const char *const OPT_KINDS[3] = {"m", "v", "master"};

/* buf: the optimizer state on the host (optim_state_size floats each: m, v and,
 * when there are master weights, master), gathered by every rank. */
static int write_optimizer(Trainer *t, const char *dir, float *const buf[3]) {
    int kinds = optim_has_master(t->optim) ? 3 : 2;
    int nt = 0;
    StTensor *ts = xcalloc((size_t)kinds * gpt_num_tensors(t->model), sizeof(StTensor));
    char (*names)[GPT_PARAM_NAME_LEN + 8] =
        xcalloc((size_t)kinds * gpt_num_tensors(t->model), sizeof *names);
    for (int i = 0; i < gpt_num_tensors(t->model); i++) {
        const ParamInfo *p = gpt_tensor(t->model, i);
        if (!p->trainable) continue; /* frozen: no optimizer state */
        int j = nt++;
        for (int k = 0; k < kinds; k++) {
            StTensor *s = &ts[kinds * j + k];
            snprintf(names[kinds * j + k], sizeof names[0], "%s.%s", OPT_KINDS[k], p->name);
            s->name = names[kinds * j + k];
            s->dtype = ST_F32;
            s->ndim = p->ndim;
            s->shape[0] = p->shape[0];
            s->shape[1] = p->shape[1];
            s->data = buf[k] + p->grad_offset;
        }
    }
    char step[32], path[4096];
    snprintf(step, sizeof step, "%d", optim_step_count(t->optim));
    const char *meta[] = {"adamw_step", step, NULL};
    int rc = path_join(path, sizeof path, dir, "optimizer.safetensors");
    if (rc == 0) rc = safetensors_write(path, ts, kinds * nt, meta);
    free(names);
    free(ts);
    return rc;
}

/* What makes dir a loadable model: the weights in fp32 (so a resumed run
 * reads back exactly what it saved; the non-model keys of model.init's
 * config.json and its generation_config.json come along), the tokenizer, and
 * the PEFT adapter with LoRA. */
static int write_model_files(Trainer *t, const char *dir) {
    const char *init = t->cfg->model.init;
    if (model_save_hf_ex(t->model, dir,
                         &(HfSaveOptions){.source_dir = init, .dtype = HF_SAVE_F32}) != 0 ||
        model_tokenizer_save(dir, t->tokenizer.name, init) != 0 ||
        (gpt_lora_config(t->model) && lora_save_peft(t->model, dir, init) != 0))
        return -1;
    return 0;
}

/* Called by every rank (gathering a sharded optimizer state is collective);
 * rank 0 writes. */
static int save_checkpoint(Trainer *t) {
    size_t n = optim_state_size(t->optim) + 1; /* trainable tensors only */
    float *buf[3] = {xcalloc(n, sizeof(float)), xcalloc(n, sizeof(float)),
                     optim_has_master(t->optim) ? xcalloc(n, sizeof(float)) : NULL};
    optim_moments_to_host(t->optim, buf[0], buf[1]);
    if (buf[2]) optim_master_to_host(t->optim, buf[2]);
    /* ZeRO-3: the whole parameters on every rank while rank 0 writes */
    int rc = optim_params_unshard(t->optim, 1);
    if (rc != 0) { /* the other ranks wait in the gather: end the job */
        fprintf(stderr, "retort: rank %d: gathering the parameters for a checkpoint: %s\n",
                t->rank, err_msg());
        dist_abort(1);
    }
    if (t->rank == 0) {
        const char *run = t->cfg->train.out_dir;
        char tmp[4096];
        rc = ckpt_begin(run, t->step, tmp, sizeof tmp);
        if (rc == 0 &&
            (write_model_files(t, tmp) != 0 || write_optimizer(t, tmp, buf) != 0 ||
             write_trainer_json(t, tmp) != 0 || ckpt_commit(run, tmp, t->step) != 0)) {
            ckpt_abort(tmp);
            rc = -1;
        }
        if (rc == 0) rc = ckpt_prune(run, t->cfg->checkpoint.keep);
    }
    optim_params_reshard(t->optim);
    for (int k = 0; k < 3; k++) free(buf[k]);
    return rc;
}

static int load_optimizer(Trainer *t, const char *dir) {
    char path[4096];
    if (path_join(path, sizeof path, dir, "optimizer.safetensors") != 0) return -1;
    SafeTensorsFile *f = safetensors_open(path);
    if (!f) return -1;
    size_t n = optim_state_size(t->optim) + 1; /* trainable tensors only */
    const char *first = NULL; /* a trainable tensor, to probe for master weights */
    for (int i = 0; i < gpt_num_tensors(t->model) && !first; i++)
        if (gpt_tensor(t->model, i)->trainable) first = gpt_tensor(t->model, i)->name;
    char probe[GPT_PARAM_NAME_LEN + 8];
    snprintf(probe, sizeof probe, "master.%s", first ? first : "");
    /* master weights are optional: a checkpoint written on the CPU has none,
     * and then the master copy is re-read from the loaded parameters */
    int kinds = optim_has_master(t->optim) && safetensors_find(f, probe) ? 3 : 2;
    float *buf[3] = {xcalloc(n, sizeof(float)), xcalloc(n, sizeof(float)),
                     kinds == 3 ? xcalloc(n, sizeof(float)) : NULL};
    int rc = 0;
    for (int i = 0; i < gpt_num_tensors(t->model) && rc == 0; i++) {
        const ParamInfo *p = gpt_tensor(t->model, i);
        if (!p->trainable) continue; /* frozen: no optimizer state */
        for (int k = 0; k < kinds && rc == 0; k++) {
            char name[GPT_PARAM_NAME_LEN + 8];
            snprintf(name, sizeof name, "%s.%s", OPT_KINDS[k], p->name);
            const StTensor *s = safetensors_find(f, name);
            if (!s) rc = err_set("%s: tensor '%s' is missing", path, name);
            else rc = safetensors_read_f32(f, s, buf[k] + p->grad_offset, p->numel);
        }
    }
    const char *step = safetensors_meta(f, "adamw_step");
    if (rc == 0 && !step) rc = err_set("%s: metadata 'adamw_step' is missing", path);
    if (rc == 0) {
        optim_moments_to_device(t->optim, buf[0], buf[1]);
        if (kinds == 3) optim_master_to_device(t->optim, buf[2]);
        optim_set_step_count(t->optim, atoi(step));
    }
    for (int k = 0; k < 3; k++) free(buf[k]);
    safetensors_close(f);
    return rc;
}

static int load_trainer_json(Trainer *t, const char *dir, int *step, int64_t *epoch,
                             int64_t *pos, int64_t *tokens, Rng *rng, int *skipped) {
    char path[4096];
    if (path_join(path, sizeof path, dir, "trainer.json") != 0) return -1;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) return err_set("%s:%d: %s", path, jerr.line, jerr.text);
    int rc = 0;
    json_t *data = json_object_get(root, "data");
    json_t *jr = json_object_get(root, "rng");
    if (!json_is_integer(json_object_get(root, "step")) || !json_is_object(data) ||
        !json_is_integer(json_object_get(data, "epoch")) ||
        !json_is_integer(json_object_get(data, "pos")) || !json_is_array(jr) ||
        json_array_size(jr) != 4) {
        rc = err_set("%s: missing or malformed step, data.epoch, data.pos or rng", path);
    } else {
        *step = (int)json_integer_value(json_object_get(root, "step"));
        *epoch = json_integer_value(json_object_get(data, "epoch"));
        *pos = json_integer_value(json_object_get(data, "pos"));
        *tokens = json_integer_value(json_object_get(root, "tokens_seen"));
        /* 0 when absent (written before train.skip_nonfinite existed) */
        *skipped = (int)json_integer_value(json_object_get(root, "nonfinite_skipped"));
        for (int i = 0; i < 4 && rc == 0; i++) {
            const char *hex = json_string_value(json_array_get(jr, (size_t)i));
            if (!hex) rc = err_set("%s: rng[%d] is not a string", path, i);
            else rng->s[i] = strtoull(hex, NULL, 16);
        }
    }
    (void)t;
    json_decref(root);
    return rc;
}

static int load_checkpoint(Trainer *t, const char *dir) {
    int step = 0, skipped = 0;
    int64_t epoch = 0, pos = 0, tokens = 0;
    Rng rng = {{0}};
    if (load_trainer_json(t, dir, &step, &epoch, &pos, &tokens, &rng, &skipped) != 0) return -1;
    /* ZeRO-3: the whole buffer to load into, and this rank's shard from it */
    if (optim_params_unshard(t->optim, 0) != 0) return -1;
    int rc = model_load_weights(t->model, dir) != 0 ||
             (gpt_lora_config(t->model) && lora_load_peft(t->model, dir) != 0);
    optim_params_reshard(t->optim);
    if (rc) return -1;
    optim_sync_master(t->optim);
    if (load_optimizer(t, dir) != 0) return -1;
    /* retort no longer writes such a checkpoint, but an older one may have */
    if (!optim_params_finite(t->optim)) {
        const char *bad = optim_first_nonfinite_param(t->optim);
        return err_set("its weights hold NaN or infinite values (first in %s)", bad ? bad : "?");
    }
    t->step = step;
    t->skipped = skipped;
    t->tokens_seen = tokens;
    t->rng = rng;
    t->obj->seek(t->state, epoch, pos);
    if (t->obj->load_position) { /* data.mix: each file where it was */
        char path[4096];
        json_error_t jerr;
        path_join(path, sizeof path, dir, "trainer.json");
        json_t *root = json_load_file(path, 0, &jerr);
        json_t *data = root ? json_object_get(root, "data") : NULL;
        int rc = t->obj->load_position(t->state, data ? json_object_get(data, "detail") : NULL);
        json_decref(root);
        if (rc != 0) return -1;
    }
    if (gpt_lora_config(t->model)) { /* the dropout masks continue where they were */
        char path[4096];
        json_error_t jerr;
        path_join(path, sizeof path, dir, "trainer.json");
        json_t *root = json_load_file(path, 0, &jerr);
        json_t *ds = root ? json_object_get(root, "lora_dropout_step") : NULL;
        if (json_is_integer(ds)) gpt_lora_set_dropout_step(t->model, (uint64_t)json_integer_value(ds));
        json_decref(root);
    }
    return 0;
}

/* ---------------------------------------------------------------- config changes */

/* Keys that decide which tensors a checkpoint holds and their shapes: with
 * another value its weights, adapters or optimizer state do not load. Any
 * other key (train.steps, optim.lr, data, logging, ...) may change between a
 * save and a resume, and then applies from the resumed step on. */
static const char *const TENSOR_KEYS[] = {
    "model.n_layer",   "model.n_head",        "model.n_embd",        "model.vocab_size",
    "model.n_positions", "model.init",        "finetune.freeze",     "finetune.train_only",
    "finetune.lora_r", "finetune.lora_alpha", "finetune.lora_targets", "model.arch",
    "model.n_kv_head", "model.head_dim",      "model.intermediate_size",
    "model.tie_word_embeddings", "model.attn_bias", "model.mlp_bias"};

static int is_tensor_key(const char *key) {
    for (size_t i = 0; i < sizeof TENSOR_KEYS / sizeof *TENSOR_KEYS; i++)
        if (!strcmp(key, TENSOR_KEYS[i])) return 1;
    return 0;
}

/* "a.b OLD -> NEW, c.d OLD -> NEW" */
typedef struct {
    char text[2048];
    size_t len;
    int n;
    int model_keys; /* how many of them are model.* (the model's shape or its base) */
    int lora_keys;  /* finetune.lora_* */
} KeyList;

static void keylist_add(KeyList *l, const char *key, const json_t *was, const json_t *now) {
    const size_t flags = JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(12);
    char *a = json_dumps(was, flags), *b = json_dumps(now, flags);
    if (l->len < sizeof l->text)
        l->len += (size_t)snprintf(l->text + l->len, sizeof l->text - l->len, "%s%s %s -> %s",
                                   l->n ? ", " : "", key, a ? a : "?", b ? b : "?");
    l->n++;
    l->model_keys += !strncmp(key, "model.", 6);
    l->lora_keys += !strncmp(key, "finetune.lora_", 14);
    free(a);
    free(b);
}

/* The keys whose value in the resolved config a checkpoint was written with
 * (dir/trainer.json) differs from this run's, split into tensor keys and the
 * rest. -1 when trainer.json holds no config. */
static int config_changes(const Trainer *t, const char *dir, KeyList *tensor, KeyList *other) {
    memset(tensor, 0, sizeof *tensor);
    memset(other, 0, sizeof *other);
    char path[4096];
    if (path_join(path, sizeof path, dir, "trainer.json") != 0) return -1;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    json_t *saved = root ? json_object_get(root, "config") : NULL;
    char *text = config_to_json(t->cfg);
    json_t *now = json_loads(text, 0, &jerr);
    free(text);
    int rc = json_is_object(saved) && json_is_object(now) ? 0 : -1;
    const char *section;
    json_t *keys;
    json_object_foreach(rc == 0 ? now : NULL, section, keys) {
        json_t *old_keys = json_object_get(saved, section);
        const char *name;
        json_t *v;
        json_object_foreach(keys, name, v) {
            json_t *was = json_object_get(old_keys, name);
            if (!was || json_equal(was, v)) continue; /* !was: a key added since that save */
            char key[256];
            snprintf(key, sizeof key, "%s.%s", section, name);
            keylist_add(is_tensor_key(key) ? tensor : other, key, was, v);
        }
    }
    json_decref(now);
    json_decref(root);
    return rc;
}

/* The best so far (eval.best_metric) as the checkpoint in dir recorded it;
 * rank 0 decides (it reads best/ and may remove it) and tells the others. */
static int resume_best(Trainer *t, const char *dir) {
    int failed = 0;
    if (t->is_main && t->best.on) {
        char path[4096];
        json_error_t jerr;
        json_t *root = path_join(path, sizeof path, dir, "trainer.json") == 0
                           ? json_load_file(path, 0, &jerr) : NULL;
        failed = best_resume(&t->best, t->cfg->train.out_dir, t->step,
                             root ? json_object_get(root, "best") : NULL, t->quiet) != 0;
        json_decref(root);
    }
    if (dist_any(failed)) {
        if (!failed) err_set("rank 0 could not restore the best checkpoint's record");
        return -1;
    }
    if (t->world > 1) dist_broadcast(&t->best, sizeof t->best);
    return 0;
}

/* Newest loadable checkpoint; a damaged one is reported and skipped. A
 * checkpoint that does not load because the config changed is not damaged:
 * the run stops, saying which keys changed and how to go on. */
static int resume(Trainer *t) {
    int64_t steps[MAX_CKPTS];
    const char *run = t->cfg->train.out_dir;
    int n = ckpt_list(run, steps, MAX_CKPTS);
    if (n == 0) {
        printf("resume: no complete checkpoint in %s; starting from step 0\n", run);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        char dir[4096], why[2048];
        KeyList tensor, other;
        ckpt_dir_name(dir, sizeof dir, run, steps[i]);
        int loaded = load_checkpoint(t, dir) == 0;
        snprintf(why, sizeof why, "%s", loaded ? "" : err_msg());
        int compared = config_changes(t, dir, &tensor, &other) == 0;
        if (loaded) {
            printf("resume: continuing from %s (step %d)\n", dir, t->step);
            if (resume_best(t, dir) != 0) return -1;
            if (compared && other.n > 0 && !t->quiet)
                printf("resume: the config differs from the one %s was written with; from "
                       "step %d on: %s\n", dir, t->step + 1, other.text);
            return 0;
        }
        if (compared && tensor.n > 0) {
            char from[8400] = "";
            if (tensor.model_keys == 0 && tensor.lora_keys == 0) /* freezing: the weights fit */
                snprintf(from, sizeof from, ", with model.init=%s to start from its weights", dir);
            else if (tensor.model_keys == 0) /* the base fits; the trained adapter is apart */
                snprintf(from, sizeof from, ", with model.init=MERGED to start from its "
                         "weights after `retort export --model %s --merge-lora %s --out MERGED`",
                         dir, dir);
            return err_set(
                "cannot resume from %s: the config changed in %s, which decide%s the tensors a "
                "checkpoint holds, so it does not load (%s). The checkpoints are intact and "
                "nothing was deleted. To continue this run, set %s back (%s/trainer.json holds "
                "the config it was written with); to train with the new values, start a new "
                "run in another train.out_dir%s",
                dir, tensor.text, tensor.n == 1 ? "s" : "", why, tensor.n == 1 ? "it" : "them",
                dir, from);
        }
        fprintf(stderr, "resume: cannot load %s: %s\n", dir, why);
        if (i + 1 < n) fprintf(stderr, "resume: falling back to the previous checkpoint\n");
    }
    return err_set("no loadable checkpoint in %s: all %d failed to load (the reasons are above) "
                   "although the config they were written with matches this one. They were "
                   "left as they are; to start over, use a new train.out_dir (a run without "
                   "--resume in %s would replace them step by step)",
                   run, n, run);
}

/* ------------------------------------------------------------------ metrics */

/* On resume, drop metric lines past the resumed step so the file reads as one run. */
static int open_metrics(Trainer *t) {
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->cfg->train.out_dir);
    if (t->step > 0 && path_exists(path)) {
        size_t len;
        char *text = read_file(path, &len);
        if (!text) return -1;
        char *kept = xmalloc(len + 1);
        size_t k = 0;
        for (char *line = text; *line;) {
            char *nl = strchr(line, '\n');
            size_t ll = nl ? (size_t)(nl - line + 1) : strlen(line);
            json_error_t jerr;
            json_t *j = json_loadb(line, ll, 0, &jerr);
            json_t *s = j ? json_object_get(j, "step") : NULL;
            if (s && json_is_integer(s) && json_integer_value(s) <= t->step) {
                memcpy(kept + k, line, ll);
                k += ll;
            }
            json_decref(j);
            line += ll;
        }
        int rc = write_file_atomic(path, kept, k);
        free(kept);
        free(text);
        if (rc != 0) return -1;
    }
    t->metrics = fopen(path, t->step > 0 ? "a" : "w");
    if (!t->metrics) return err_set("cannot open %s: %s", path, strerror(errno));
    if (t->cfg->train.tensorboard && !(t->tb = tb_open(t->cfg->train.out_dir))) return -1;
    return 0;
}

/* One metrics.jsonl line (with its newline), mirrored to the TensorBoard file. */
static void write_metrics_line(const Trainer *t, const char *line) {
    fputs(line, t->metrics);
    if (!t->tb) return;
    if (tb_log_json_line(t->tb, line) != 0) fprintf(stderr, "warning: %s\n", err_msg());
    tb_flush(t->tb); /* TensorBoard follows the run as it goes */
}

static void fmt_duration(char *buf, size_t cap, double s) {
    long v = (long)(s + 0.5);
    if (v >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", v / 3600, v / 60 % 60, v % 60);
    else snprintf(buf, cap, "%02ld:%02ld", v / 60, v % 60);
}

/* ------------------------------------------------------------------- set-up */

/* "a,b, c" -> up to max trimmed items pointing into buf; returns the count. */
static int split_list(char *buf, const char **items, int max) {
    int n = 0;
    for (char *tok = strtok(buf, ","); tok && n < max; tok = strtok(NULL, ",")) {
        while (*tok == ' ') tok++;
        char *end = tok + strlen(tok);
        while (end > tok && end[-1] == ' ') *--end = '\0';
        if (*tok) items[n++] = tok;
    }
    return n;
}

/* finetune.*: frozen tensors or LoRA adapters, before the optimizer exists. */
static int apply_finetune(Trainer *t) {
    const Config *c = t->cfg;
    char buf[CFG_STR];
    const char *items[64];
    if (c->finetune.freeze[0] || c->finetune.train_only[0]) {
        int train_only = !c->finetune.freeze[0];
        snprintf(buf, sizeof buf, "%s", train_only ? c->finetune.train_only : c->finetune.freeze);
        int n = split_list(buf, items, 64);
        int rc = train_only ? gpt_set_trainable(t->model, (const char *const[]){"*"}, 1, items, n)
                            : gpt_set_trainable(t->model, items, n, NULL, 0);
        if (rc != 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", err_msg()); /* err_set overwrites err_msg() */
            return err_set("finetune.%s: %s", train_only ? "train_only" : "freeze", why);
        }
    }
    if (c->finetune.lora_r > 0 && !gpt_lora_config(t->model)) {
        LoraConfig lc;
        memset(&lc, 0, sizeof lc);
        lc.r = c->finetune.lora_r;
        lc.alpha = (float)c->finetune.lora_alpha;
        lc.dropout = (float)c->finetune.lora_dropout;
        lc.seed = (uint64_t)c->train.seed;
        /* unset: PEFT's default for the family (GPT-2 c_attn; q_proj, v_proj for the
         * Llama families) */
        const char *targets = c->finetune.lora_targets;
        if (!targets[0])
            targets = gpt_config(t->model)->arch == ARCH_GPT2 ? "c_attn" : "q_proj,v_proj";
        snprintf(buf, sizeof buf, "%s", targets);
        int n = split_list(buf, items, LORA_MAX_TARGETS);
        for (int i = 0; i < n; i++) snprintf(lc.targets[i], sizeof lc.targets[i], "%s", items[i]);
        lc.n_targets = n;
        if (gpt_lora_attach(t->model, &lc) != 0) {
            char why[512];
            snprintf(why, sizeof why, "%s", err_msg());
            return err_set("finetune.lora_*: %s", why);
        }
    }
    return 0;
}

/* The run's model options that are not part of the model: the head's chunk
 * and activation recomputation (validated by the config). */
static void model_run_options(Trainer *t) {
    const Config *c = t->cfg;
    gpt_set_logits_chunk(t->model, c->train.logits_chunk_rows);
    int rc = gpt_set_recompute(t->model, gpt_recompute_from_name(c->train.recompute));
    assert(rc == 0); /* the key's choices are the mode names */
    (void)rc;
}

static int build_model(Trainer *t) {
    const Config *c = t->cfg;
    if (c->model.init[0]) {
        t->model = model_load_hf(c->model.init, t->be);
        if (!t->model) return -1;
        model_run_options(t);
        const GPTConfig *g = gpt_config(t->model);
        if (g->vocab_size != c->model.vocab_size || g->n_layer != c->model.n_layer ||
            g->n_embd != c->model.n_embd || g->n_head != c->model.n_head)
            printf("note: model shape taken from %s/config.json (%d layers, %d heads, %d wide, "
                   "vocab %d), not from the config's model section\n",
                   c->model.init, g->n_layer, g->n_head, g->n_embd, g->vocab_size);
        return 0;
    }
    GPTConfig g;
    if (config_model(c, &g) != 0) return -1;
    t->model = gpt_create(&g, t->be);
    if (!t->model) return -1;
    gpt_init_random(t->model, (uint64_t)c->train.seed);
    model_run_options(t);
    return 0;
}

/* The plan of this run (train/plan.h) against what the device has, before
 * the model's allocations: a run that cannot fit is refused with the
 * breakdown and what would fit, instead of failing to allocate (or swapping)
 * minutes later. Against train.memory_limit when set, else the backend's
 * available memory: on CUDA the GPU's free memory, where the runtime the plan
 * allows for is already taken; on the CPU MemAvailable, measured after the
 * data is loaded. A config the planner cannot read is left to the model's
 * own setup, which reports it next. */
static int check_memory(Trainer *t) {
    const Config *c = t->cfg;
    PlanModel pm;
    if (plan_model_init(&pm, c) != 0) return 0;
    int recompute = PLAN_RECOMPUTE_NONE;
    if (plan_recompute_from_name(c->train.recompute, &recompute) != 0) { /* validated by config */
        plan_model_free(&pm);
        return -1;
    }
    PlanChoice ch = {t->world > 1 ? config_dist_zero(c) : PLAN_SHARD_NONE, recompute, t->B,
                     t->world};
    size_t limit = 0, total = 0;
    const char *where;
    int rc = 0;
    if (c->train.memory_limit[0]) {
        rc = plan_parse_bytes(c->train.memory_limit, &limit); /* checked by config_validate */
        where = "train.memory_limit";
    } else if (t->be->memory_info && t->be->memory_info(&limit, &total) == 0) {
        int cuda = !strcmp(t->be->name, "cuda");
        if (cuda) limit += PLAN_CUDA_RUNTIME;
        where = cuda ? "the GPU's free memory" : "the host's available memory (MemAvailable)";
    } else {
        if (!t->quiet)
            printf("note: cannot tell the device's memory (%s); the run is not checked against "
                   "its plan\n", t->be->memory_info ? err_msg() : "the backend does not say");
        plan_model_free(&pm);
        return 0;
    }
    if (rc == 0) rc = plan_check_fits(&pm, ch, limit, where);
    if (rc == 0 && !t->quiet)
        printf("memory plan: %.1f MiB per rank of %.1f MiB (%s); retort plan -c CONFIG details "
               "it\n", plan_memory(&pm, ch).total / 1048576.0, limit / 1048576.0, where);
    plan_model_free(&pm);
    return rc;
}

static void trainer_free(Trainer *t) {
    if (t->metrics) fclose(t->metrics);
    tb_close(t->tb);
    grad_overlap_free(t->overlap);
    optim_free(t->optim);
    if (t->state) t->obj->close(t->state);
    gpt_free(t->model);
}

static void set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

/* Fields, generators and the objective of a run; nothing opened yet. */
static int trainer_init(Trainer *t, const Config *cfg, const TrainOptions *opt) {
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    t->opt = opt;
    t->B = cfg->data.batch_size;
    t->T = cfg->data.seq_len;
    t->A = cfg->data.grad_accum;
    t->rank = dist_rank();
    t->world = dist_size();
    t->is_main = t->rank == 0;
    t->quiet = opt->quiet || !t->is_main;
    rng_seed(&t->rng, (uint64_t)cfg->train.seed);
    if (getenv("RETORT_STOP_AT_STEP")) /* tests: a SIGTERM that arrives during that step */
        stop_at_step = atoi(getenv("RETORT_STOP_AT_STEP"));
    const char *env;
    if ((env = getenv("RETORT_TEST_RANK"))) test_rank = atoi(env);
    if ((env = getenv("RETORT_TEST_SIGNAL_AT_STEP"))) test_signal_at = atoi(env);
    if ((env = getenv("RETORT_TEST_STALL_AT_STEP"))) test_stall_at = atoi(env);
    dist_set_timeout(cfg->dist.timeout_s);
    set_threads(cfg->train.threads);
    if (!(t->obj = objective_find(cfg->objective.type))) return -1;
    assert(t->obj->n_metrics <= OBJECTIVE_MAX_METRICS &&
           t->obj->n_eval_metrics <= t->obj->n_metrics);
    t->rows = t->B * t->obj->rows_per_item;
    t->env = (TrainEnv){cfg, NULL, NULL, t->B, t->T, t->A, t->rank, t->world, &t->rng,
                        opt->quiet, &t->tokenizer};
    return 0;
}

/* train.epochs > 0: the steps that many passes over the training items take. */
static int resolve_epochs(Trainer *t, Config *cfg) {
    if (cfg->train.epochs <= 0) return 0;
    int64_t items = t->obj->items(t->state);
    double per_step = (double)t->B * t->A;
    double steps = ceil(cfg->train.epochs * (double)items / per_step);
    cfg->train.steps = steps < 1 ? 1 : steps > 1e9 ? 1000000000 : (int)steps;
    if (cfg->optim.warmup_steps > cfg->train.steps)
        return err_set("optim.warmup_steps (%d) exceeds the %d steps that train.epochs=%g gives",
                       cfg->optim.warmup_steps, cfg->train.steps, cfg->train.epochs);
    if (!t->opt->quiet)
        printf("train.epochs %g over %lld items: %d steps\n", cfg->train.epochs,
               (long long)items, cfg->train.steps);
    return 0;
}

/* AdamW over the trainable parameters (sharded with dist.zero: the state
 * from 1, the gradients too from 2), the schedule. */
static int create_optimizer(Trainer *t) {
    const Config *cfg = t->cfg;
    AdamWConfig ac = {cfg->optim.beta1, cfg->optim.beta2, cfg->optim.eps, cfg->optim.weight_decay,
                      cfg->optim.grad_clip};
    if (!(t->optim = optim_create(t->model, &ac))) return -1;
    int zero = config_dist_zero(cfg);
    if (zero >= 1 && t->world > 1 && optim_shard(t->optim, t->rank, t->world) != 0) return -1;
    if (zero >= 2 && t->world > 1 && optim_shard_grads(t->optim) != 0) return -1;
    if (zero >= 3 && t->world > 1 && optim_shard_params(t->optim) != 0) return -1;
    if (cfg->dist.overlap && t->world > 1 && zero < 2) /* ZeRO-2 reduces inside backward */
        t->overlap = grad_overlap_create(t->model, t->A, (size_t)cfg->dist.bucket_mb << 20,
                                         zero >= 1 ? gpt_grad_size(t->model) : 0,
                                         !strcmp(t->be->name, "cuda"));
    int warmup = cfg->optim.warmup_steps;
    if (cfg->optim.warmup_ratio > 0) { /* resolved here: train.epochs may have set the steps */
        warmup = warmup_steps_for_ratio(cfg->optim.warmup_ratio, cfg->train.steps);
        if (!t->quiet)
            printf("optim.warmup_ratio %g of %d steps: %d warmup steps\n", cfg->optim.warmup_ratio,
                   cfg->train.steps, warmup);
    }
    t->sched = (LrSchedule){cfg->optim.lr, cfg->optim.min_lr, warmup, cfg->train.steps,
                            SCHED_COSINE, !strcmp(cfg->optim.schedule_convention, "hf"),
                            WARMUP_LINEAR};
    if (warmup_shape_from_name(cfg->optim.warmup_shape, &t->sched.warmup_shape) != 0) return -1;
    return schedule_from_name(cfg->optim.schedule, &t->sched.schedule);
}

static void print_setup(const Trainer *t) {
    const Config *cfg = t->cfg;
    if (!t->quiet) {
        const GPTConfig *g = gpt_config(t->model);
        printf("model: %zu parameters (%d layers, %d heads, %d wide, vocab %d) on %s, %d threads\n"
               "objective %s; data: %s, %lld training %s of %d tokens%s\n",
               gpt_num_params(t->model), g->n_layer, g->n_head, g->n_embd, g->vocab_size,
               t->be->name, omp_get_max_threads(), t->obj->name,
               cfg->data.train[0] ? cfg->data.train : "data.mix",
               (long long)t->obj->items(t->state), t->obj->item_noun, t->T + 1,
               t->obj->has_val(t->state) ? ", validation on" : "");
        if (t->world > 1)
            printf("data parallel: %d ranks (%s), %d %s per rank per micro-step, global batch "
                   "%d\n",
                   t->world, dist_world()->launcher, t->B, t->obj->batch_noun,
                   t->world * t->B * t->A);
        if (optim_params_sharded(t->optim))
            printf("ZeRO-3: AdamW state, gradients and parameters sharded over %d ranks, %.2f MiB "
                   "of state, %.2f MiB of gradients and %.2f MiB of parameters on this rank\n",
                   t->world, optim_state_bytes(t->optim) / 1048576.0,
                   optim_grad_bytes(t->optim) / 1048576.0, optim_param_bytes(t->optim) / 1048576.0);
        else if (optim_grads_sharded(t->optim))
            printf("ZeRO-2: AdamW state and gradients sharded over %d ranks, %.2f MiB of state "
                   "and %.2f MiB of gradients on this rank\n", t->world,
                   optim_state_bytes(t->optim) / 1048576.0, optim_grad_bytes(t->optim) / 1048576.0);
        else if (optim_is_sharded(t->optim))
            printf("ZeRO-1: AdamW state sharded over %d ranks, %.2f MiB on this rank\n", t->world,
                   optim_state_bytes(t->optim) / 1048576.0);
        if (t->overlap)
            printf("gradient reduction overlapped with the backward pass (dist.overlap): "
                   "buckets of %d MiB started as the blocks finish\n", cfg->dist.bucket_mb);
        if (gpt_num_trainable(t->model) < gpt_num_params(t->model))
            printf("training %zu of %zu parameters (%s); gradients + optimizer state %.2f MiB\n",
                   gpt_num_trainable(t->model), gpt_num_params(t->model),
                   gpt_lora_config(t->model) ? "LoRA adapters" : "the rest frozen",
                   optim_train_state_bytes(t->optim) / 1048576.0);
        if (t->obj->describe) t->obj->describe(t->state, &t->env);
    }
    if (cfg->eval.every > 0 && !t->obj->has_val(t->state) && !t->quiet)
        printf("note: eval.every is set but there is no validation data (set data.val or "
               "data.val_fraction)\n");
}

/* eval.generate_every's hook and eval.best_metric, checked before any step. */
static int setup_best(Trainer *t) {
    const Config *cfg = t->cfg;
    t->gen = cfg->eval.generate_every > 0 ? gen_eval_hook : NULL;
    if (cfg->eval.generate_every > 0 && !t->gen)
        return err_set("eval.generate_every is set, but this caller lends the trainer no "
                       "generation-based evaluation; run it with retort train or retort stages");
    const char *names[GEN_EVAL_MAX_METRICS];
    int higher[GEN_EVAL_MAX_METRICS], n = 0;
    if (t->gen && t->is_main && t->gen->check(t->gen->ctx, cfg) != 0) return -1;
    for (int i = 0; t->gen && i < t->gen->n_metrics && i < GEN_EVAL_MAX_METRICS; i++) {
        if (!t->gen->measures(t->gen->ctx, cfg, i)) continue;
        names[n] = t->gen->metrics[i].name;
        higher[n++] = t->gen->metrics[i].higher_is_better;
    }
    if (best_init(&t->best, cfg, names, higher, n) != 0) return -1;
    if (!strcmp(t->best.metric, "val_loss") && !t->obj->has_val(t->state))
        return err_set("eval.best_metric val_loss needs validation data; set data.val or "
                       "data.val_fraction");
    return 0;
}

static void report_stale(const char *dir, void *ctx) {
    if (!((const Trainer *)ctx)->quiet)
        printf("removed %s: a checkpoint save that an earlier run did not finish\n", dir);
}

/* Everything before the first step: backend, the objective's data, the model,
 * partial fine-tuning, the objective's second models, the optimizer, resume
 * and the metrics file. */
static int trainer_setup(Trainer *t, Config *resolved) {
    const Config *cfg = t->cfg;
    if (!(t->be = backend_by_name(cfg->train.device))) return -1;
    t->env.be = t->be;
    if (!(t->state = t->obj->open(&t->env))) return -1;
    t->metric_table = objective_metrics(t->obj, t->state, &t->n_metrics, &t->n_eval_metrics);
    assert(t->n_metrics <= OBJECTIVE_MAX_METRICS && t->n_eval_metrics <= t->n_metrics);
    if (check_memory(t) != 0 || build_model(t) != 0) return -1;
    t->env.model = t->model;
    if (resolve_epochs(t, resolved) != 0) return -1;
    if (t->T > gpt_context_len(gpt_config(t->model)))
        return err_set("data.seq_len %d exceeds the model's context of %d positions "
                       "(n_positions, or a shorter sliding_window); lower data.seq_len", t->T,
                       gpt_context_len(gpt_config(t->model)));
    if (apply_finetune(t) != 0 || t->obj->prepare(t->state, &t->env) != 0) return -1;
    if (create_optimizer(t) != 0) return -1;
    if (mkdir_p(cfg->train.out_dir) != 0) return -1;
    if (t->is_main && ckpt_remove_stale(cfg->train.out_dir, report_stale, t) < 0) return -1;
    if (setup_best(t) != 0) return -1;
    if (t->opt->resume && resume(t) != 0) return -1;
    if (t->is_main && open_metrics(t) != 0) return -1;
    print_setup(t);
    return 0;
}

/* ---------------------------------------------------------------- the loop */

/* One optimizer step's forward and backward: the objective's, on zeroed
 * gradients in train mode. */
static void train_step(Trainer *t, StepStats *st) {
    memset(st, 0, sizeof *st);
    optim_zero_grad(t->optim);
    if (t->overlap) grad_overlap_begin_step(t->overlap);
    gpt_set_train_mode(t->model, 1);
    st->loss = t->obj->step(t->state, &t->env, st->metrics);
    t->tokens_seen += (int64_t)t->A * t->rows * t->T;
}

/* Sums the ranks' gradient shares (each is weighted for the global step). */
static void reduce_gradients(Trainer *t) {
    /* ZeRO-2: each block's was reduce-scattered into the shard during backward */
    if (t->world == 1 || optim_grads_sharded(t->optim)) return;
    /* dist.overlap: each block's started during backward; the same bits */
    if (t->overlap && grad_overlap_finish(t->overlap) == 0) return;
    if (!strcmp(t->be->name, "cuda")) { /* gradients are fp32 on every backend */
        dist_allreduce_bucket_async(gpt_grads(t->model), gpt_grad_size(t->model), DIST_F32,
                                    DIST_SUM);
        dist_wait();
    } else if (optim_is_sharded(t->optim)) { /* ZeRO-1: each rank needs its shard */
        dist_reduce_scatter_f32(gpt_grads(t->model), gpt_grad_size(t->model), DIST_SUM);
    } else {
        dist_allreduce_f32(gpt_grads(t->model), gpt_grad_size(t->model), DIST_SUM);
    }
}

/* A number for metrics.jsonl in printf format fmt, or null: JSON has no NaN
 * or infinity, and one "nan" token would make the line unreadable. */
static const char *json_number(char *buf, size_t cap, const char *fmt, double v) {
    if (!isfinite(v)) return "null";
    snprintf(buf, cap, fmt, v);
    return buf;
}

/* The objective's numbers for a metrics line: ", \"<prefix><name>\": value"
 * for the first n of them. */
static void metrics_fields(const Trainer *t, const double *m, int n, const char *prefix,
                           char *buf, size_t cap) {
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; k < n && len < cap; k++) {
        const ObjectiveMetric *om = &t->metric_table[k];
        char num[64];
        len += (size_t)snprintf(buf + len, cap - len, ", \"%s%s\": %s", prefix, om->name,
                                json_number(num, sizeof num, om->format, m[k]));
    }
}

/* The console's " (label value, ...)" of the metrics that have a label. */
static void console_fields(const Trainer *t, const double *m, char *buf, size_t cap) {
    size_t len = 0;
    int shown = 0;
    buf[0] = '\0';
    for (int k = 0; k < t->n_metrics && len < cap; k++) {
        const ObjectiveMetric *om = &t->metric_table[k];
        if (!om->console) continue;
        len += (size_t)snprintf(buf + len, cap - len, "%s%s %.*f", shown++ ? ", " : " (",
                                om->console, om->digits, m[k]);
    }
    if (shown && len < cap) snprintf(buf + len, cap - len, ")");
}

/* The step's metrics line, and the console line every train.log_every steps.
 * nonfinite: the step's loss or gradient was NaN or infinite, and it was not
 * applied ("skipped": true). */
static void log_step(const Trainer *t, const StepStats *st, double lr, double norm, double tok_s,
                     double elapsed, int first_step, int tty, int nonfinite) {
    const Config *cfg = t->cfg;
    char extra[2048], loss[64], lr_s[64], norm_s[512], tok_s_s[64], el_s[64];
    metrics_fields(t, st->metrics, t->n_metrics, "", extra, sizeof extra);
    char line[4096];
    snprintf(line, sizeof line,
             "{\"step\": %d, \"loss\": %s, \"lr\": %s, \"grad_norm\": %s, "
             "\"tokens_per_s\": %s, \"elapsed_s\": %s%s%s}\n",
             t->step, json_number(loss, sizeof loss, "%.17g", st->loss),
             json_number(lr_s, sizeof lr_s, "%.6e", lr),
             json_number(norm_s, sizeof norm_s, "%.6f", norm),
             json_number(tok_s_s, sizeof tok_s_s, "%.1f", tok_s),
             json_number(el_s, sizeof el_s, "%.3f", elapsed), extra,
             nonfinite ? ", \"skipped\": true" : "");
    if (t->is_main) write_metrics_line(t, line);
    if (t->quiet || (t->step % cfg->train.log_every != 0 && t->step != cfg->train.steps)) return;
    char el[32], eta[32], obj[256];
    fmt_duration(el, sizeof el, elapsed);
    fmt_duration(eta, sizeof eta, elapsed / (t->step - first_step) * (cfg->train.steps - t->step));
    console_fields(t, st->metrics, obj, sizeof obj);
    printf("%sstep %d/%d | loss %.4f%s | lr %.2e | norm %.3f | %.0f tok/s | %s elapsed | ETA %s%s",
           tty ? "\r\033[K" : "", t->step, cfg->train.steps, st->loss, obj, lr, norm, tok_s, el,
           eta, tty ? "" : "\n");
    fflush(stdout);
}

/* A validation pass in eval mode, logged as "val_loss" and "eval_<metric>";
 * returns val_loss. */
static double evaluate(Trainer *t, int tty) {
    StepStats ev;
    memset(&ev, 0, sizeof ev);
    gpt_set_train_mode(t->model, 0);
    ev.loss = t->obj->eval(t->state, &t->env, ev.metrics);
    char extra[2048];
    metrics_fields(t, ev.metrics, t->n_eval_metrics, "eval_", extra, sizeof extra);
    char loss[64];
    char line[4096];
    snprintf(line, sizeof line, "{\"step\": %d, \"val_loss\": %s%s}\n", t->step,
             json_number(loss, sizeof loss, "%.9g", ev.loss), extra);
    if (t->is_main) write_metrics_line(t, line);
    if (!t->quiet) printf("%sstep %d | val loss %.4f\n", tty ? "\n" : "", t->step, ev.loss);
    return ev.loss;
}

/* Generation-based evaluation (eval.generate_every) in eval mode: rank 0
 * runs the hook and sends the numbers to the other ranks, so every rank logs
 * and decides the same. Logged as "gen/<metric>" (measured ones only). */
static int generate_eval(Trainer *t, int tty, double *values) {
    const GenEvalHook *h = t->gen;
    double buf[GEN_EVAL_MAX_METRICS + 1];
    for (int i = 0; i <= GEN_EVAL_MAX_METRICS; i++) buf[i] = NAN;
    double t0 = now_seconds();
    if (t->is_main) {
        gpt_set_train_mode(t->model, 0);
        buf[GEN_EVAL_MAX_METRICS] =
            h->run(h->ctx, t->cfg, t->model, t->tokenizer.name, t->step, buf) != 0 ? 1.0 : 0.0;
    }
    if (t->world > 1) dist_broadcast(buf, sizeof buf);
    if (buf[GEN_EVAL_MAX_METRICS] != 0) {
        if (t->is_main) {
            char why[3000];
            snprintf(why, sizeof why, "%s", err_msg());
            return err_set("step %d: generation-based evaluation (eval.generate_every): %s",
                           t->step, why);
        }
        return err_set("step %d: generation-based evaluation failed on rank 0", t->step);
    }
    char line[4096], num[64];
    size_t len = (size_t)snprintf(line, sizeof line, "{\"step\": %d", t->step);
    char console[1024] = "";
    size_t clen = 0;
    for (int i = 0; i < h->n_metrics && len < sizeof line; i++) {
        values[i] = buf[i];
        if (isnan(buf[i])) continue; /* not measured with this config */
        len += (size_t)snprintf(line + len, sizeof line - len, ", \"gen/%s\": %s",
                                h->metrics[i].name, json_number(num, sizeof num, "%.9g", buf[i]));
        if (clen < sizeof console)
            clen += (size_t)snprintf(console + clen, sizeof console - clen, "%s%s %.4g",
                                     clen ? ", " : "", h->metrics[i].name, buf[i]);
    }
    if (len < sizeof line)
        snprintf(line + len, sizeof line - len, ", \"gen_seconds\": %.3f}\n", now_seconds() - t0);
    if (t->is_main) write_metrics_line(t, line);
    if (!t->quiet) printf("%sstep %d | gen %s\n", tty ? "\n" : "", t->step, console);
    return 0;
}

/* RUN/best when value (eval.best_metric, measured at this step) beats the
 * best so far: the model files, then the atomic swap (train/best.h). */
static int save_best_if_better(Trainer *t, double value, int tty) {
    if (!best_improves(&t->best, value)) return 0;
    /* a finite loss and gradient can still leave non-finite weights */
    if (dist_any(!optim_params_finite(t->optim))) return 0; /* the checkpoint path reports it */
    if (optim_params_unshard(t->optim, 1) != 0) { /* ZeRO-3: whole while rank 0 writes */
        fprintf(stderr, "retort: rank %d: gathering the parameters for the best model: %s\n",
                t->rank, err_msg());
        dist_abort(1);
    }
    int failed = 0;
    if (t->is_main) {
        char tmp[4096];
        failed = best_begin(t->cfg->train.out_dir, tmp, sizeof tmp) != 0;
        if (!failed && write_model_files(t, tmp) != 0) {
            char why[3000];
            snprintf(why, sizeof why, "%s", err_msg());
            rm_rf(tmp);
            err_set("%s", why);
            failed = 1;
        }
        if (!failed) failed = best_commit(&t->best, t->cfg->train.out_dir, tmp, value, t->step) != 0;
    }
    optim_params_reshard(t->optim);
    if (dist_any(failed)) {
        if (!failed) err_set("rank 0 could not write the best checkpoint of step %d", t->step);
        return -1;
    }
    if (!t->is_main) { /* the same decision, without the files */
        t->best.have = 1;
        t->best.value = value;
        t->best.step = t->step;
    }
    if (!t->quiet)
        printf("%sbest %s %.6g at step %d -> %s/best\n", tty ? "\n" : "", t->best.metric, value,
               t->step, t->cfg->train.out_dir);
    return 0;
}

/* ---------------------------------------------------------------- non-finite values */

/* What --resume would do now, for the messages that stop a run. */
static void resume_hint(const Trainer *t, char *buf, size_t cap) {
    const char *run = t->cfg->train.out_dir;
    int64_t newest;
    if (ckpt_list(run, &newest, 1) == 1) {
        char dir[4096];
        ckpt_dir_name(dir, sizeof dir, run, newest);
        snprintf(buf, cap, "--resume continues from %s, the last finite checkpoint", dir);
    } else {
        snprintf(buf, cap, "There is no checkpoint in %s yet, so a new run starts from step 0",
                 run);
    }
}

/* A step whose loss or gradient norm is NaN or infinite; its update was not
 * applied. It is skipped (its gradients are dropped by the next step's
 * zeroing) while train.skip_nonfinite allows and the weights are still
 * finite; otherwise the run stops, naming the step and the first offending
 * tensor. Every rank comes here at the same step: the loss is the same on
 * every rank (objective.h) and the norm is that of the reduced gradient. */
static int nonfinite_step(Trainer *t, double loss, double norm) {
    const Config *cfg = t->cfg;
    const char *grad = optim_first_nonfinite_grad(t->optim); /* collective under ZeRO-1 */
    int weights_ok = optim_params_finite(t->optim);
    char what[1024];
    snprintf(what, sizeof what, "step %d: the loss is %g and the gradient norm %g (%s%s)",
             t->step, loss, norm, grad ? "first non-finite gradient: " : "",
             grad ? grad : "every gradient is finite, the loss is not");
    if (weights_ok && t->skipped < cfg->train.skip_nonfinite) {
        t->skipped++;
        if (!t->quiet)
            printf("%s%s; step skipped: no update, its gradients dropped (%d of "
                   "train.skip_nonfinite=%d)\n",
                   isatty(STDOUT_FILENO) ? "\n" : "", what, t->skipped,
                   cfg->train.skip_nonfinite);
        return 0;
    }
    char weights[512] = "", hint[4200];
    if (!weights_ok) {
        const char *p = optim_first_nonfinite_param(t->optim);
        snprintf(weights, sizeof weights, "; the weights themselves hold NaN or infinite values "
                 "(first in %s) since an earlier update, so skipping steps cannot help",
                 p ? p : "?");
    }
    resume_hint(t, hint, sizeof hint);
    char skip[256] = "";
    if (weights_ok && cfg->train.skip_nonfinite > 0)
        snprintf(skip, sizeof skip, " (train.skip_nonfinite=%d steps were skipped already)",
                 t->skipped);
    else if (weights_ok)
        snprintf(skip, sizeof skip, ", or set train.skip_nonfinite to skip up to that many "
                 "such steps");
    return err_set("%s%s. The run stops without applying it and writes no checkpoint of "
                   "non-finite weights; %s. Lower optim.lr (now %g) or check the data%s",
                   what, weights, hint, cfg->optim.lr, skip);
}

/* Saves when asked to stop, every checkpoint.every steps and at the end;
 * never weights that hold a NaN or an infinity. */
static int checkpoint_if_due(Trainer *t, int stop, int tty) {
    const Config *cfg = t->cfg;
    int periodic = cfg->checkpoint.every > 0 && t->step % cfg->checkpoint.every == 0;
    if (!stop && !periodic && t->step != cfg->train.steps) return 0;
    /* the loss and gradient were finite, but a finite update can still overflow */
    if (dist_any(!optim_params_finite(t->optim))) {
        const char *p = optim_first_nonfinite_param(t->optim);
        char hint[4200];
        resume_hint(t, hint, sizeof hint);
        return err_set("step %d: the weights hold NaN or infinite values after the update "
                       "(first in %s) although the step's loss and gradient were finite; the "
                       "checkpoint of step %d was not written. %s. Lower optim.lr (now %g)",
                       t->step, p ? p : "?", t->step, hint, cfg->optim.lr);
    }
    int failed = save_checkpoint(t) != 0;
    if (dist_any(failed)) {
        if (!failed) err_set("rank 0 could not write the checkpoint of step %d", t->step);
        return -1;
    }
    if (!t->quiet) {
        char dir[4096];
        ckpt_dir_name(dir, sizeof dir, cfg->train.out_dir, t->step);
        printf("%ssaved %s\n", tty ? "\n" : "", dir);
    }
    return 0;
}

static void test_hooks(const Trainer *t) {
    if (t->rank != test_rank) return;
    int step = t->step + 1;
    if (step == test_signal_at) raise(SIGTERM);
    if (step == test_stall_at) {
        fprintf(stderr, "retort: rank %d (pid %d): RETORT_TEST_STALL_AT_STEP=%d: stopping itself "
                "(SIGSTOP) as a hung rank would\n", t->rank, (int)getpid(), step);
        fflush(stderr);
        raise(SIGSTOP);
    }
}

/* The process's peak resident memory (getrusage's ru_maxrss: the kernel's
 * VmHWM, in KiB on Linux), said at the end of a run so a memory measurement
 * needs no outside tool (experiments/bench/stream_rss.sh reads it). */
static void log_peak_memory(const Trainer *t) {
    struct rusage ru;
    if (t->quiet || getrusage(RUSAGE_SELF, &ru) != 0) return;
    printf("peak resident memory: %.1f MiB%s\n", (double)ru.ru_maxrss / 1024.0,
           t->world > 1 ? " (rank 0)" : "");
}

/* Steps to train.steps, or until a stop signal (then a checkpoint). */
static int train_loop(Trainer *t) {
    const Config *cfg = t->cfg;
    size_t N = (size_t)t->rows * t->T * t->world; /* tokens per micro-step over all ranks */
    int tty = isatty(STDOUT_FILENO);
    double t0 = now_seconds();
    int first_step = t->step;
    while (t->step < cfg->train.steps) {
        double ts = now_seconds();
        double lr = lr_at(&t->sched, t->step + 1);
        StepStats st;
        test_hooks(t);
        train_step(t, &st);
        reduce_gradients(t);
        double norm = optim_clip_grad_norm(t->optim);
        /* checked before the update, so a NaN never reaches the weights from here */
        int nonfinite = !isfinite(st.loss) || !isfinite(norm);
        if (!nonfinite) optim_step(t->optim, lr);
        t->step++;
        int failed = nonfinite && nonfinite_step(t, st.loss, norm) != 0;
        double dt = now_seconds() - ts, elapsed = now_seconds() - t0;
        log_step(t, &st, lr, norm, (double)t->A * N / dt, elapsed, first_step, tty, nonfinite);
        if (failed) {
            if (t->is_main) fflush(t->metrics);
            return -1;
        }
        int last = t->step == cfg->train.steps;
        double best_value = NAN; /* eval.best_metric, when measured at this step */
        if (t->obj->has_val(t->state) && cfg->eval.every > 0 &&
            (t->step % cfg->eval.every == 0 || last)) {
            double val_loss = evaluate(t, tty);
            if (!strcmp(t->best.metric, "val_loss")) best_value = val_loss;
        }
        if (t->gen && cfg->eval.generate_every > 0 &&
            (t->step % cfg->eval.generate_every == 0 || last)) {
            double gen[GEN_EVAL_MAX_METRICS];
            if (generate_eval(t, tty, gen) != 0) {
                if (t->is_main) fflush(t->metrics);
                return -1;
            }
            for (int i = 0; i < t->gen->n_metrics; i++)
                if (!strncmp(t->best.metric, "gen/", 4) &&
                    !strcmp(t->best.metric + 4, t->gen->metrics[i].name))
                    best_value = gen[i];
        }
        if (!isnan(best_value) && save_best_if_better(t, best_value, tty) != 0) return -1;
        if (t->is_main) fflush(t->metrics);
        /* every rank stops at the same step boundary */
        int stop = dist_any(stop_signals > 0 || t->step == stop_at_step);
        if (checkpoint_if_due(t, stop, tty) != 0) return -1;
        if (stop) {
            if (!t->quiet) printf("stopped by signal after step %d; resume with --resume\n", t->step);
            break;
        }
    }
    if (tty && !t->quiet) printf("\n");
    if (!t->quiet)
        printf("activations: %.2f MiB allocated (train.recompute %s)\n",
               gpt_activation_bytes_allocated(t->model) / 1048576.0, t->cfg->train.recompute);
    log_peak_memory(t);
    return 0;
}

int train_run(const Config *cfg_in, const TrainOptions *opt) {
    if (config_validate(cfg_in) != 0) return -1;
    Config resolved = *cfg_in; /* train.epochs resolves train.steps */
    Trainer t;
    int rc = -1;
    if (trainer_init(&t, &resolved, opt) == 0 && trainer_setup(&t, &resolved) == 0)
        rc = train_loop(&t);
    trainer_free(&t);
    return rc;
}
