/* train/plan.c — per-rank memory and FLOPs of a training run from its shapes
 * (train/plan.h says what is exact and what is a model).
 *
 * The parameter table is rebuilt here from the shapes, tensor by tensor, as
 * model/model.c build_table and model/model_lora.c lay it out (16-element
 * aligned tensors, the parts of a fused GEMM weight packed back to back, the
 * embedding and an untied head padded to Vp rows), and LoRA's buffers as
 * ensure_lora_acts carves them (each rounded up to 64 bytes): a second,
 * independent account of the same memory, which tests/test_plan.c holds to
 * the CPU allocator's byte counter, so a change to the model's buffers that
 * is not made here fails a test instead of silently mis-planning. The
 * activations, whose layout depends on the recomputation mode, are not
 * counted a second time: model/model.c's gpt_activation_bytes lays them out
 * from the shapes with the code that carves them.
 */
#include "train/plan.h"

#include <assert.h>
#include <ctype.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/h5data.h"
#include "model/hf_config.h"
#include "train/dist.h"
#include "train/objectives/objective.h"
#include "util/util.h"

static const char *const SHARD_NAME[PLAN_SHARD_COUNT] = {"none", "zero1", "zero2", "zero3"};
static const char *const RECOMPUTE_NAME[PLAN_RECOMPUTE_COUNT] = {"none", "attention", "block"};

const char *plan_shard_name(int s) { return s >= 0 && s < PLAN_SHARD_COUNT ? SHARD_NAME[s] : "?"; }
const char *plan_recompute_name(int r) {
    return r >= 0 && r < PLAN_RECOMPUTE_COUNT ? RECOMPUTE_NAME[r] : "?";
}

int plan_recompute_from_name(const char *name, int *out) {
    for (int r = 0; r < PLAN_RECOMPUTE_COUNT; r++)
        if (!strcmp(name, RECOMPUTE_NAME[r])) {
            *out = r;
            return 0;
        }
    return err_set("unknown recomputation '%s'; choose none, attention or block", name);
}

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }
static size_t round64(size_t bytes) { return (bytes + 63) & ~(size_t)63; }
/* what the CPU backend reserves for an allocation of `bytes` (model/backend_cpu.c) */
static size_t backend_block(size_t bytes) { return bytes ? round64(bytes) : 64; }

/* ------------------------------------------------------------ the table */

typedef struct {
    PlanModel *pm;
    int cap;
} TableBuilder;

static PlanTensor *push(TableBuilder *tb, const char *name, int layer, size_t rows, size_t cols,
                        int packed) {
    PlanModel *pm = tb->pm;
    if (pm->n_tensors == tb->cap) {
        tb->cap = tb->cap ? 2 * tb->cap : 64;
        pm->tensors = xrealloc(pm->tensors, (size_t)tb->cap * sizeof *pm->tensors);
    }
    PlanTensor *t = &pm->tensors[pm->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->numel = rows * (cols ? cols : 1);
    t->alloc = packed ? t->numel : round16(t->numel);
    t->layer = layer;
    t->trainable = 1;
    return t;
}

static void push_block(TableBuilder *tb, int l, const char *suffix, size_t rows, size_t cols,
                       int packed) {
    char name[GPT_PARAM_NAME_LEN];
    snprintf(name, sizeof name, tb->pm->llama ? "model.layers.%d.%s" : "h.%d.%s", l, suffix);
    push(tb, name, l, rows, cols, packed)->matrix = cols > 0; /* a block's 2-D tensors are GEMM weights */
}

static void build_table(TableBuilder *tb) {
    PlanModel *pm = tb->pm;
    const GPTConfig *c = &pm->g;
    size_t C = (size_t)c->n_embd, I = (size_t)pm->mlp_width, V = (size_t)c->vocab_size;
    size_t vp_alloc = round16((size_t)pm->Vp * C);
    PlanTensor *wte = push(tb, pm->llama ? "model.embed_tokens.weight" : "wte.weight", -1, V, C, 0);
    wte->alloc = vp_alloc;
    wte->head = !c->untied_head; /* tied: the head's weight */
    if (!pm->llama) {
        push(tb, "wpe.weight", -1, (size_t)c->n_positions, C, 0);
        for (int l = 0; l < c->n_layer; l++) {
            push_block(tb, l, "ln_1.weight", C, 0, 0);
            push_block(tb, l, "ln_1.bias", C, 0, 0);
            push_block(tb, l, "attn.c_attn.weight", C, 3 * C, 0);
            push_block(tb, l, "attn.c_attn.bias", 3 * C, 0, 0);
            push_block(tb, l, "attn.c_proj.weight", C, C, 0);
            push_block(tb, l, "attn.c_proj.bias", C, 0, 0);
            push_block(tb, l, "ln_2.weight", C, 0, 0);
            push_block(tb, l, "ln_2.bias", C, 0, 0);
            push_block(tb, l, "mlp.c_fc.weight", C, I, 0);
            push_block(tb, l, "mlp.c_fc.bias", I, 0, 0);
            push_block(tb, l, "mlp.c_proj.weight", I, C, 0);
            push_block(tb, l, "mlp.c_proj.bias", C, 0, 0);
        }
        push(tb, "ln_f.weight", -1, C, 0, 0);
        push(tb, "ln_f.bias", -1, C, 0, 0);
        return;
    }
    size_t QD = (size_t)pm->NH * pm->HS, KD = (size_t)pm->KVH * pm->HS;
    for (int l = 0; l < c->n_layer; l++) {
        push_block(tb, l, "input_layernorm.weight", C, 0, 0);
        push_block(tb, l, "self_attn.q_proj.weight", QD, C, 1);
        push_block(tb, l, "self_attn.k_proj.weight", KD, C, 1);
        push_block(tb, l, "self_attn.v_proj.weight", KD, C, 0);
        if (c->attn_bias) {
            push_block(tb, l, "self_attn.q_proj.bias", QD, 0, 1);
            push_block(tb, l, "self_attn.k_proj.bias", KD, 0, 1);
            push_block(tb, l, "self_attn.v_proj.bias", KD, 0, 0);
        }
        if (c->qk_norm) {
            push_block(tb, l, "self_attn.q_norm.weight", (size_t)pm->HS, 0, 0);
            push_block(tb, l, "self_attn.k_norm.weight", (size_t)pm->HS, 0, 0);
        }
        push_block(tb, l, "self_attn.o_proj.weight", C, QD, 0);
        if (c->attn_out_bias) push_block(tb, l, "self_attn.o_proj.bias", C, 0, 0);
        push_block(tb, l, "post_attention_layernorm.weight", C, 0, 0);
        push_block(tb, l, "mlp.gate_proj.weight", I, C, 1);
        push_block(tb, l, "mlp.up_proj.weight", I, C, 0);
        if (c->mlp_bias) {
            push_block(tb, l, "mlp.gate_proj.bias", I, 0, 1);
            push_block(tb, l, "mlp.up_proj.bias", I, 0, 0);
        }
        push_block(tb, l, "mlp.down_proj.weight", C, I, 0);
        if (c->mlp_bias) push_block(tb, l, "mlp.down_proj.bias", C, 0, 0);
    }
    push(tb, "model.norm.weight", -1, C, 0, 0);
    if (c->untied_head) {
        PlanTensor *head = push(tb, "lm_head.weight", -1, V, C, 0);
        head->alloc = vp_alloc;
        head->head = 1;
    }
}

/* comma-separated items of a config string, trimmed (the trainer's split_list) */
static int split_items(char *buf, const char **items, int max) {
    int n = 0;
    for (char *tok = strtok(buf, ","); tok && n < max; tok = strtok(NULL, ",")) {
        while (isspace((unsigned char)*tok)) tok++;
        char *end = tok + strlen(tok);
        while (end > tok && isspace((unsigned char)end[-1])) *--end = 0;
        if (*tok) items[n++] = tok;
    }
    return n;
}

/* finetune.freeze / train_only as gpt_set_trainable applies them: freeze
 * patterns, then train patterns (train_only = freeze "*" first). */
static int apply_patterns(PlanModel *pm, const Config *c) {
    if (!c->finetune.freeze[0] && !c->finetune.train_only[0]) return 0;
    int train_only = !c->finetune.freeze[0];
    char buf[CFG_STR];
    const char *items[64];
    snprintf(buf, sizeof buf, "%s", train_only ? c->finetune.train_only : c->finetune.freeze);
    int n = split_items(buf, items, 64);
    for (int k = 0; k < n; k++) {
        int hits = 0;
        for (int i = 0; i < pm->n_tensors; i++) hits += fnmatch(items[k], pm->tensors[i].name, 0) == 0;
        if (!hits)
            return err_set("finetune.%s: pattern '%s' matches no parameter of this model (names look "
                           "like '%s')", train_only ? "train_only" : "freeze", items[k],
                           pm->tensors[pm->n_tensors > 3 ? 3 : 0].name);
    }
    for (int i = 0; i < pm->n_tensors; i++) {
        PlanTensor *t = &pm->tensors[i];
        if (train_only) t->trainable = 0;
        for (int k = 0; k < n; k++)
            if (fnmatch(items[k], t->name, 0) == 0) t->trainable = train_only;
    }
    return 0;
}

/* A block's four GEMMs (model_impl.h MM_*): recompute attention reruns the
 * q/k/v one, block the first three and the down-projection where LoRA
 * adapts it (model.c recompute_block). */
enum { GEMM_QKV, GEMM_O, GEMM_FC, GEMM_DOWN };

/* A block's linear modules as LoRA sees them (model_impl.h LinInfo): name, in,
 * out, and the GEMM it is part of. */
typedef struct {
    const char *name;
    size_t in, out;
    int gemm;
} Lin;

static int block_lins(const PlanModel *pm, Lin *lin) {
    size_t C = (size_t)pm->g.n_embd, QD = (size_t)pm->NH * pm->HS, KD = (size_t)pm->KVH * pm->HS;
    size_t I = (size_t)pm->mlp_width;
    if (!pm->llama) {
        const Lin g[4] = {{"attn.c_attn", C, 3 * C, GEMM_QKV}, {"attn.c_proj", C, C, GEMM_O},
                          {"mlp.c_fc", C, I, GEMM_FC}, {"mlp.c_proj", I, C, GEMM_DOWN}};
        memcpy(lin, g, sizeof g);
        return 4;
    }
    const Lin l[7] = {{"self_attn.q_proj", C, QD, GEMM_QKV}, {"self_attn.k_proj", C, KD, GEMM_QKV},
                      {"self_attn.v_proj", C, KD, GEMM_QKV}, {"self_attn.o_proj", QD, C, GEMM_O},
                      {"mlp.gate_proj", C, I, GEMM_FC},     {"mlp.up_proj", C, I, GEMM_FC},
                      {"mlp.down_proj", I, C, GEMM_DOWN}};
    memcpy(lin, l, sizeof l);
    return 7;
}

/* PEFT's name match for a list of targets (model/model_lora.c lora_targets) */
static int lora_match(const char *key, const char *bare, const char *const *targets, int n) {
    size_t klen = strlen(key);
    for (int t = 0; t < n; t++) {
        const char *tg = targets[t];
        size_t tlen = strlen(tg);
        if (!strcmp(key, tg)) return 1;
        if (tlen < klen && key[klen - tlen - 1] == '.' && !strcmp(key + klen - tlen, tg)) return 1;
        if (strpbrk(tg, "*?[") && (fnmatch(tg, key, 0) == 0 || fnmatch(tg, bare, 0) == 0)) return 1;
    }
    return 0;
}

/* finetune.lora_*: every base tensor frozen, an (in, r) and an (r, out)
 * adapter appended per targeted module, block by block. */
static int apply_lora(TableBuilder *tb, const Config *c) {
    PlanModel *pm = tb->pm;
    if (c->finetune.lora_r <= 0) return 0;
    pm->lora_r = c->finetune.lora_r;
    pm->lora_dropout = c->finetune.lora_dropout > 0;
    char buf[CFG_STR];
    const char *targets[LORA_MAX_TARGETS];
    snprintf(buf, sizeof buf, "%s",
             c->finetune.lora_targets[0] ? c->finetune.lora_targets
                                         : pm->llama ? "q_proj,v_proj" : "c_attn");
    int nt = split_items(buf, targets, LORA_MAX_TARGETS);
    for (int i = 0; i < pm->n_tensors; i++) pm->tensors[i].trainable = 0;
    Lin lin[7];
    int n_lin = block_lins(pm, lin), count = 0;
    for (int l = 0; l < pm->g.n_layer; l++)
        for (int k = 0; k < n_lin; k++) {
            char key[GPT_PARAM_NAME_LEN + 32], name[GPT_PARAM_NAME_LEN];
            snprintf(key, sizeof key, pm->llama ? "model.layers.%d.%s" : "transformer.h.%d.%s", l,
                     lin[k].name);
            if (!lora_match(key, pm->llama ? key : key + 12, targets, nt)) continue;
            count++;
            const char *fmt = pm->llama ? "model.layers.%d.%s.lora_%c.weight" : "h.%d.%s.lora_%c.weight";
            snprintf(name, sizeof name, fmt, l, lin[k].name, 'A');
            PlanTensor *a = push(tb, name, l, lin[k].in, (size_t)pm->lora_r, 0);
            a->lora = 1;
            a->module = k;
            snprintf(name, sizeof name, fmt, l, lin[k].name, 'B');
            PlanTensor *b = push(tb, name, l, (size_t)pm->lora_r, lin[k].out, 0);
            b->lora = 2;
            b->module = k;
        }
    if (!count)
        return err_set("finetune.lora_targets '%s' matches none of the model's linear layers",
                       c->finetune.lora_targets[0] ? c->finetune.lora_targets
                                                   : pm->llama ? "q_proj,v_proj" : "c_attn");
    return 0;
}

/* The frozen second model of c's objective, as objective_load_frozen loads
 * it: model.init's shapes from dir, nothing trainable, the run's logits
 * chunk. 0 with pm->frozen NULL when the run has none. */
static int plan_frozen(PlanModel *pm, const Config *c) {
    const char *dir = NULL;
    if (!strcmp(c->objective.type, "kd") && c->kd.teacher[0]) {
        dir = c->kd.teacher;
        pm->kd_online = 1;
    } else if (!strcmp(c->objective.type, "dpo") && strcmp(c->dpo.loss_type, "simpo") != 0) {
        dir = c->dpo.reference[0] ? c->dpo.reference : c->model.init;
        if (!strcmp(dir, "precomputed")) dir = NULL;
    }
    if (!dir || !dir[0]) return 0;
    Config *fc = xmalloc(sizeof *fc);
    *fc = *c;
    snprintf(fc->model.init, sizeof fc->model.init, "%s", dir);
    snprintf(fc->objective.type, sizeof fc->objective.type, "%s", c->objective.type);
    fc->finetune.freeze[0] = fc->finetune.train_only[0] = 0;
    fc->finetune.lora_r = 0;
    fc->kd.teacher[0] = 0;            /* no third model */
    snprintf(fc->dpo.loss_type, sizeof fc->dpo.loss_type, "simpo");
    pm->frozen = xcalloc(1, sizeof *pm->frozen);
    int rc = plan_model_init(pm->frozen, fc);
    free(fc);
    if (rc != 0) {
        free(pm->frozen);
        pm->frozen = NULL;
        return -1;
    }
    PlanModel *f = pm->frozen;
    for (int i = 0; i < f->n_tensors; i++) f->tensors[i].trainable = 0;
    f->n_trainable = f->n_grad = 0;
    return 0;
}

int plan_model_init(PlanModel *pm, const Config *c) {
    memset(pm, 0, sizeof *pm);
    if (c->model.init[0]) {
        if (hf_config_read(c->model.init, &pm->g) != 0) return -1;
    } else if (config_model(c, &pm->g) != 0) {
        return -1;
    }
    if (gpt_config_check(&pm->g) != 0) return -1;
    const GPTConfig *g = &pm->g;
    pm->llama = g->arch != ARCH_GPT2;
    pm->NH = g->n_head;
    pm->KVH = g->n_kv_head ? g->n_kv_head : g->n_head;
    pm->HS = g->head_dim ? g->head_dim : g->n_embd / g->n_head;
    pm->mlp_width = g->intermediate_size ? g->intermediate_size : 4 * g->n_embd;
    pm->W = (pm->NH + 2 * pm->KVH) * pm->HS;
    int pad = g->vocab_pad > 0 ? g->vocab_pad : GPT_VOCAB_PAD;
    pm->Vp = (int)(((long)g->vocab_size + pad - 1) / pad * pad);
    pm->cuda = !strcmp(c->train.device, "cuda");
    pm->act_size = pm->cuda ? 2 : sizeof(float);
    pm->T = c->data.seq_len;
    pm->grad_accum = c->data.grad_accum > 0 ? c->data.grad_accum : 1;
    pm->logits_chunk_rows = c->train.logits_chunk_rows;
    const Objective *obj = objective_find(c->objective.type);
    pm->rows_per_item = obj ? obj->rows_per_item : 1;
    if (pm->T < 1) return err_set("config: data.seq_len must be >= 1 (got %d)", pm->T);
    if (pm->T > gpt_context_len(g))
        return err_set("config: data.seq_len %d exceeds the model's context of %d positions; lower "
                       "data.seq_len", pm->T, gpt_context_len(g));
    TableBuilder tb = {pm, 0};
    build_table(&tb);
    if (apply_patterns(pm, c) != 0 || apply_lora(&tb, c) != 0) {
        plan_model_free(pm);
        return -1;
    }
    for (int i = 0; i < pm->n_tensors; i++) {
        const PlanTensor *t = &pm->tensors[i];
        pm->n_params += t->numel;
        pm->n_alloc += t->alloc;
        if (t->trainable) {
            pm->n_trainable += t->numel;
            pm->n_grad += t->alloc;
        }
    }
    if (plan_frozen(pm, c) != 0) {
        plan_model_free(pm);
        return -1;
    }
    return 0;
}

void plan_model_free(PlanModel *pm) {
    if (pm->frozen) {
        plan_model_free(pm->frozen);
        free(pm->frozen);
        pm->frozen = NULL;
    }
    free(pm->tensors);
    pm->tensors = NULL;
    pm->n_tensors = 0;
}

/* ------------------------------------------------------------ memory */

/* Sums buffers as model.c's carve() lays them out in one allocation. */
typedef struct {
    size_t bytes;
    size_t esize;
} Carve;
static void carve_add(Carve *cv, size_t n) { cv->bytes += round64(n * cv->esize); }

/* The activations gpt_forward allocates for N = rows x T rows under
 * `recompute`: model/model.c lays them out (gpt_activation_bytes), so the
 * plan cannot drift from the model. They are two allocations (the compute
 * type's buffers and the fp32 side buffers), neither ever empty (the
 * embedding output, the final norm's statistics), each a multiple of 64
 * bytes: backend_block adds nothing to either, and the sum is what the
 * allocator counts. */
static size_t activation_bytes(const PlanModel *pm, int rows, int recompute) {
    size_t bytes = gpt_activation_bytes(&pm->g, rows, pm->T, recompute, pm->act_size,
                                        pm->logits_chunk_rows);
    /* plan_model_init checked the config and T; rows >= 1 (plan_memory) */
    assert(bytes > 0);
    return bytes;
}

/* LoRA's activation buffers (model_lora.c ensure_lora_acts): per adapter
 * s x A^T dropout(x) (N, r) and, with dropout, the dropped input (N, in);
 * where `recompute` reruns the adapter's GEMM in backward (lora_rerun:
 * attention the q/k/v GEMM, block every GEMM) those two live once per
 * module, shared by every block, instead of once per block. Then four
 * scratch buffers as wide as the widest GEMM side. */
static size_t lora_bytes(const PlanModel *pm, size_t N, int recompute) {
    if (!pm->lora_r) return 0;
    Carve x = {0, pm->act_size};
    Lin lin[7];
    int n_lin = block_lins(pm, lin), shared[7] = {0};
    size_t wide = 0, r = (size_t)pm->lora_r;
    for (int k = 0; k < n_lin; k++) {
        if (lin[k].in > wide) wide = lin[k].in;
        if (lin[k].out > wide) wide = lin[k].out;
    }
    if ((size_t)pm->W > wide) wide = (size_t)pm->W; /* the fused q/k/v GEMM's output */
    if (pm->llama && 2 * (size_t)pm->mlp_width > wide) wide = 2 * (size_t)pm->mlp_width; /* [gate | up] */
    for (int i = 0; i < pm->n_tensors; i++) {
        const PlanTensor *t = &pm->tensors[i];
        if (t->lora != 1) continue;
        int rerun = recompute == PLAN_RECOMPUTE_BLOCK ||
                    (recompute == PLAN_RECOMPUTE_ATTENTION && lin[t->module].gemm == GEMM_QKV);
        if (rerun) {
            shared[t->module] = 1; /* counted once below */
            continue;
        }
        carve_add(&x, N * r);
        if (pm->lora_dropout) carve_add(&x, N * lin[t->module].in);
    }
    for (int k = 0; k < n_lin; k++) {
        if (!shared[k]) continue;
        carve_add(&x, N * r);
        if (pm->lora_dropout) carve_add(&x, N * lin[k].in);
    }
    carve_add(&x, N * wide);
    carve_add(&x, N * r);
    carve_add(&x, N * wide);
    carve_add(&x, N * wide);
    return backend_block(x.bytes);
}

/* ZeRO-2's gradient storage besides the shard (model/model_grad_units.c):
 * the global tensors' trainable gradients, held for the whole backward, and
 * one window of the largest block's trainable gradients (each 16 floats when
 * empty, as the model allocates them). */
static void grad_units(const PlanModel *pm, size_t *global, size_t *window) {
    size_t *per = xcalloc((size_t)pm->g.n_layer, sizeof(size_t));
    *global = *window = 0;
    for (int i = 0; i < pm->n_tensors; i++) {
        const PlanTensor *t = &pm->tensors[i];
        if (!t->trainable) continue;
        if (t->layer < 0) *global += t->alloc;
        else per[t->layer] += t->alloc;
    }
    for (int l = 0; l < pm->g.n_layer; l++) *window = per[l] > *window ? per[l] : *window;
    free(per);
    if (*global == 0) *global = 16;
    if (*window == 0) *window = 16;
}

/* elements of the largest shard of n over world ranks (dist_shard_range) */
static size_t shard_of(size_t n, int world) {
    size_t b, e;
    dist_shard_range(n, 0, world > 0 ? world : 1, &b, &e);
    return e - b;
}

PlanBytes plan_memory(const PlanModel *pm, PlanChoice ch) {
    PlanBytes b;
    memset(&b, 0, sizeof b);
    int world = ch.world > 0 ? ch.world : 1;
    int shard = world > 1 ? ch.shard : PLAN_SHARD_NONE;
    int rows = ch.micro_batch * pm->rows_per_item; /* the model's B */
    size_t N = rows > 0 ? (size_t)rows * pm->T : 0;
    /* parameters: the flat buffer; ZeRO-3 (model_grad_units.c, optim.c): the
     * shard of the trainable layout in the compute type (fp32 on the CPU;
     * bf16 on CUDA, its fp32 master shard counted with the optimizer), the
     * resident global and frozen tensors, one window of the largest block's
     * trainable tensors */
    if (shard == PLAN_ZERO3) {
        size_t sh = shard_of(pm->n_grad, world), resident = 0, global, window;
        for (int i = 0; i < pm->n_tensors; i++)
            if (!(pm->tensors[i].trainable && pm->tensors[i].layer >= 0))
                resident += pm->tensors[i].alloc;
        grad_units(pm, &global, &window);
        b.params = backend_block((sh > 0 ? sh : 1) * pm->act_size) +
                   backend_block((resident > 0 ? resident : 16) * pm->act_size) +
                   backend_block(window * pm->act_size);
    } else
        b.params = backend_block(pm->n_alloc * pm->act_size);
    /* gradients: fp32 over the trainable layout (16 floats when nothing trains) */
    size_t n_grad = pm->n_grad > 0 ? pm->n_grad : 16;
    if (shard >= PLAN_ZERO2) { /* the shard, the global tensors', one block's in flight */
        size_t global, window;
        grad_units(pm, &global, &window);
        size_t sh = shard_of(pm->n_grad, world);
        b.grads = backend_block((sh > 0 ? sh : 1) * sizeof(float)) +
                  backend_block(global * sizeof(float)) + backend_block(window * sizeof(float));
    }
    else
        b.grads = backend_block(n_grad * sizeof(float));
    /* AdamW m and v (and master on a bf16 backend); sharded from ZeRO-1 on */
    size_t n_state = shard >= PLAN_ZERO1 ? shard_of(pm->n_grad, world) : pm->n_grad;
    size_t one = backend_block((n_state > 0 ? n_state : 1) * sizeof(float));
    b.optim = (pm->cuda ? 3 : 2) * one;
    b.activations = rows > 0 ? activation_bytes(pm, rows, ch.recompute) : 0;
    /* rotary tables (Llama families), LoRA scratch, the CUDA allowance */
    if (pm->llama)
        b.workspace += 2 * backend_block((size_t)pm->g.n_positions * (pm->HS / 2) * sizeof(float));
    b.workspace += N ? lora_bytes(pm, N, ch.recompute) : 0;
    if (pm->kd_online) /* per row: the divergence, top-1 agreement, KD weight (model_kd.c) */
        b.workspace += backend_block(N * 3 * sizeof(float));
    if (pm->cuda) b.workspace += PLAN_CUDA_RUNTIME;
    if (pm->frozen) { /* parameters and its forward's buffers; no gradients, no sharding */
        const PlanModel *f = pm->frozen;
        /* objective_load_frozen sets block mode: a model that never runs
         * backward keeps one block's buffers, whatever the run's choice */
        b.frozen = backend_block(f->n_alloc * f->act_size) +
                   (rows > 0 ? activation_bytes(f, rows, PLAN_RECOMPUTE_BLOCK) : 0);
        if (f->llama)
            b.frozen += 2 * backend_block((size_t)f->g.n_positions * (f->HS / 2) * sizeof(float));
    }
    b.total = b.params + b.grads + b.optim + b.activations + b.workspace + b.frozen;
    /* a save gathers m, v (and master) on the host: trainer.c save_checkpoint */
    b.checkpoint = (pm->cuda ? 3 : 2) * (pm->n_grad + 1) * sizeof(float);
    return b;
}

int plan_max_micro_batch(const PlanModel *pm, PlanChoice ch, size_t budget) {
    int lo = 0, hi = 1 << 20;
    while (lo < hi) { /* the largest B with total(B) <= budget; total grows with B */
        int mid = lo + (hi - lo + 1) / 2;
        ch.micro_batch = mid;
        if (plan_memory(pm, ch).total <= budget) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* ------------------------------------------------------------ FLOPs */

/* multiply-adds per token of one block's base matmuls */
static void block_macs(const PlanModel *pm, double *all) {
    Lin lin[7];
    int n = block_lins(pm, lin);
    *all = 0;
    for (int k = 0; k < n; k++) *all += (double)lin[k].in * (double)lin[k].out;
}

/* The lowest block backward visits (model.c backward_through_head): 0 when
 * the embedding trains, else the lowest block holding a trainable tensor,
 * n_layer when none does. */
static int lowest_backward_block(const PlanModel *pm) {
    int lowest = pm->g.n_layer;
    for (int i = 0; i < pm->n_tensors; i++) {
        const PlanTensor *t = &pm->tensors[i];
        if (!t->trainable) continue;
        if (t->layer >= 0 && t->layer < lowest) lowest = t->layer;
        if (t->layer < 0 && (strstr(t->name, "wte") || strstr(t->name, "wpe") ||
                             strstr(t->name, "embed_tokens")))
            return 0;
    }
    return lowest;
}

/* Multiply-adds per token that backward's recomputation of block l repeats
 * (model.c recompute_block): attention reruns the q/k/v GEMM, block the
 * q/k/v, out-projection and first MLP GEMMs, and the down-projection where
 * LoRA adapts it; each with the adapters of its modules. */
static double recompute_macs(const PlanModel *pm, int l, int recompute) {
    Lin lin[7];
    int n = block_lins(pm, lin), down_adapted = 0;
    for (int i = 0; i < pm->n_tensors; i++)
        if (pm->tensors[i].lora && pm->tensors[i].layer == l &&
            lin[pm->tensors[i].module].gemm == GEMM_DOWN)
            down_adapted = 1;
    int last = recompute == PLAN_RECOMPUTE_ATTENTION ? GEMM_QKV
               : down_adapted                        ? GEMM_DOWN
                                                     : GEMM_FC;
    double macs = 0;
    for (int k = 0; k < n; k++)
        if (lin[k].gemm <= last) macs += (double)lin[k].in * (double)lin[k].out;
    for (int i = 0; i < pm->n_tensors; i++) {
        const PlanTensor *t = &pm->tensors[i];
        if (t->lora && t->layer == l && lin[t->module].gemm <= last) macs += (double)t->numel;
    }
    return macs;
}

double plan_flops_per_step(const PlanModel *pm, PlanChoice ch) {
    const GPTConfig *g = &pm->g;
    double T = pm->T, L = g->n_layer;
    double seqs = (double)ch.micro_batch * pm->rows_per_item * pm->grad_accum;
    double tokens = seqs * T;
    double blk;
    block_macs(pm, &blk);
    double head = (double)g->vocab_size * g->n_embd;
    /* weight-gradient products: trainable block matrices, the head (the
     * embedding when tied) when it trains, and both products of every adapter */
    double trainable_macs = 0, adapter_macs = 0;
    for (int i = 0; i < pm->n_tensors; i++) {
        const PlanTensor *t = &pm->tensors[i];
        if (t->lora) adapter_macs += (double)t->numel;
        else if (t->trainable && t->matrix) trainable_macs += (double)t->numel;
        else if (t->trainable && t->head) trainable_macs += head;
    }
    double fwd_macs = L * blk + head + adapter_macs;
    double bwd_macs = L * blk + head + trainable_macs + adapter_macs;
    /* causal attention, per sequence and block: QK^T and AV over T(T+1)/2
     * pairs, 2 FLOPs per multiply-add; backward twice forward */
    double attn_block = 2.0 * 2.0 * (double)pm->NH * pm->HS * (T * (T + 1) / 2.0);
    double flops = 2.0 * tokens * (fwd_macs + bwd_macs) + 3.0 * seqs * attn_block * L;
    /* recomputation reruns every block backward visits but the last, whose
     * buffers forward left in the scratch */
    if (ch.recompute != PLAN_RECOMPUTE_NONE)
        for (int l = lowest_backward_block(pm); l < g->n_layer - 1; l++)
            flops += 2.0 * tokens * recompute_macs(pm, l, ch.recompute) + seqs * attn_block;
    if (pm->frozen) { /* the teacher's or reference's forward over the same rows */
        const PlanModel *f = pm->frozen;
        double fblk;
        block_macs(f, &fblk);
        flops += 2.0 * tokens * (f->g.n_layer * fblk + (double)f->g.vocab_size * f->g.n_embd) +
                 seqs * 2.0 * 2.0 * (double)f->NH * f->HS * (T * (T + 1) / 2.0) * f->g.n_layer;
    }
    return flops;
}

double plan_flops_6n(const PlanModel *pm, PlanChoice ch) {
    const GPTConfig *g = &pm->g;
    double T = pm->T;
    double tokens = (double)ch.micro_batch * pm->rows_per_item * pm->grad_accum * T;
    /* PaLM: 6 N + 12 L H Q T per token, N the non-embedding parameters plus the head matmul */
    double blk;
    block_macs(pm, &blk);
    double n = g->n_layer * blk + (double)g->vocab_size * g->n_embd;
    return tokens * (6.0 * n + 12.0 * g->n_layer * pm->NH * pm->HS * T);
}

/* ------------------------------------------------------------ data */

/* One file of the run: its metadata (no rows read), loaded or streamed as
 * seq_batches.c open_data decides, and the bytes of either (plan.h). */
static int data_file(const Config *c, const char *role, const char *path, size_t rows_ahead,
                     PlanData *out) {
    assert(out->n_files < PLAN_DATA_MAX_FILES);
    PlanDataFile *f = &out->file[out->n_files++];
    memset(f, 0, sizeof *f);
    snprintf(f->role, sizeof f->role, "%s", role);
    snprintf(f->path, sizeof f->path, "%s", path);
    if (!strcmp(c->objective.type, "dpo") || !strcmp(c->objective.type, "orpo")) {
        snprintf(f->why, sizeof f->why, "a preference file, loaded whole on every rank (not sized "
                 "here)");
        return 0;
    }
    f->streamed = !strcmp(c->data.stream, "true");
    if (!strcmp(c->data.stream, "auto")) {
        f->streamed = dataset_stream_auto(path);
        if (f->streamed < 0) return -1;
    }
    Dataset ds;
    if (dataset_open_stream(&ds, path) != 0) return -1; /* the metadata only */
    f->sized = 1;
    f->n_tokens = ds.n_tokens;
    f->n_docs = ds.n_docs;
    int sft = ds.schema != SCHEMA_LM;
    if (f->streamed) {
        int columns = 2 + sft + ds.has_role + ds.has_task + 2 * (ds.topk > 0);
        f->bytes = (size_t)columns * DATASET_STREAM_CACHE + rows_ahead * 2 * sizeof(int);
    } else {
        size_t tokens = (size_t)ds.n_tokens, docs = (size_t)ds.n_docs;
        f->bytes = tokens * sizeof(uint32_t) + (docs + 1) * sizeof(int64_t) +
                   (sft ? tokens : 0) + (size_t)(ds.has_role + ds.has_task) * docs +
                   tokens * (size_t)ds.topk * (sizeof(uint32_t) + sizeof(float));
    }
    dataset_close(&ds);
    out->total += f->bytes;
    return 0;
}

int plan_data(const Config *c, int micro_batch, PlanData *out) {
    memset(out, 0, sizeof *out);
    size_t rows_ahead = (size_t)(micro_batch > 0 ? micro_batch : 1) * (size_t)c->data.seq_len;
    if (c->data.mix[0]) {
        DataMix mix;
        if (config_data_mix(c, &mix) != 0) return -1;
        for (int i = 0; i < mix.n; i++)
            if (data_file(c, "data.mix", mix.path[i], rows_ahead, out) != 0) return -1;
    } else if (c->data.train[0] && data_file(c, "data.train", c->data.train, rows_ahead, out) != 0) {
        return -1;
    }
    if (c->data.val[0] && data_file(c, "data.val", c->data.val, rows_ahead, out) != 0) return -1;
    return 0;
}

/* ------------------------------------------------------------ sizes */

int plan_parse_bytes(const char *text, size_t *out) {
    static const struct {
        const char *unit;
        double scale;
    } UNITS[] = {{"", 1},        {"b", 1},          {"k", 1e3},         {"kb", 1e3},
                 {"m", 1e6},     {"mb", 1e6},       {"g", 1e9},         {"gb", 1e9},
                 {"t", 1e12},    {"tb", 1e12},      {"kib", 1024.0},    {"mib", 1048576.0},
                 {"gib", 1073741824.0}, {"tib", 1099511627776.0}};
    const char *p = text;
    char *end;
    double v = strtod(p, &end);
    if (end == p || !isfinite(v) || v < 0)
        return err_set("'%s' is not a size; write a number and a unit, e.g. 80GB, 2GiB, 512MB", text);
    while (isspace((unsigned char)*end)) end++;
    char unit[8];
    size_t n = strlen(end);
    if (n >= sizeof unit) goto bad;
    for (size_t i = 0; i <= n; i++) unit[i] = (char)tolower((unsigned char)end[i]);
    for (size_t u = 0; u < sizeof UNITS / sizeof UNITS[0]; u++)
        if (!strcmp(unit, UNITS[u].unit)) {
            double bytes = v * UNITS[u].scale;
            if (bytes > 1.8e19) return err_set("size '%s' is too large", text);
            *out = (size_t)bytes;
            return 0;
        }
bad:
    return err_set("size '%s': unknown unit '%s'; use B, kB, MB, GB, TB (powers of 1000) or KiB, "
                   "MiB, GiB, TiB (powers of 1024), e.g. 80GB", text, end);
}

/* b in GiB, MiB or KiB, whichever reads best, into a static ring of buffers */
static const char *human(size_t b) {
    static char ring[16][32];
    static int next;
    char *buf = ring[next++ % 16];
    if (b >= (size_t)1 << 30) snprintf(buf, 32, "%.2f GiB", (double)b / 1073741824.0);
    else if (b >= (size_t)1 << 20) snprintf(buf, 32, "%.2f MiB", (double)b / 1048576.0);
    else snprintf(buf, 32, "%.2f KiB", (double)b / 1024.0);
    return buf;
}

void plan_format(char *buf, size_t cap, const PlanBytes *b) {
    int n = snprintf(buf, cap, "parameters %s, gradients %s, optimizer %s, activations %s, "
                     "workspace %s, ", human(b->params), human(b->grads), human(b->optim),
                     human(b->activations), human(b->workspace));
    if (b->frozen && n > 0 && (size_t)n < cap)
        n += snprintf(buf + n, cap - n, "frozen second model %s, ", human(b->frozen));
    if (n > 0 && (size_t)n < cap) snprintf(buf + n, cap - n, "total %s", human(b->total));
}

int plan_check_fits(const PlanModel *pm, PlanChoice ch, size_t available, const char *where) {
    PlanBytes b = plan_memory(pm, ch);
    if (b.total <= available) return 0;
    char line[512], advice[1024];
    plan_format(line, sizeof line, &b);
    int fit = plan_max_micro_batch(pm, ch, available);
    int n = 0;
    if (fit > 0)
        n += snprintf(advice + n, sizeof advice - n, "data.batch_size %d fits (raise data.grad_accum "
                      "to keep the batch)", fit);
    else
        n += snprintf(advice + n, sizeof advice - n, "not even data.batch_size 1 fits");
    for (int r = ch.recompute + 1; r < PLAN_RECOMPUTE_COUNT; r++) {
        PlanChoice c2 = ch;
        c2.recompute = r;
        if (plan_memory(pm, c2).total <= available) {
            n += snprintf(advice + n, sizeof advice - n, "; train.recompute %s would fit (%s)",
                          plan_recompute_name(r), human(plan_memory(pm, c2).total));
            break;
        }
    }
    for (int z = ch.shard + 1; ch.world > 1 && z <= PLAN_ZERO3; z++)
        n += snprintf(advice + n, sizeof advice - n, "; dist.zero %d shards the %s (%s per rank)", z,
                      z == PLAN_ZERO1   ? "optimizer state"
                      : z == PLAN_ZERO2 ? "optimizer state and gradients"
                                        : "optimizer state, gradients and parameters",
                      human(plan_memory(pm, (PlanChoice){z, ch.recompute, ch.micro_batch,
                                                         ch.world}).total));
    snprintf(advice + n, sizeof advice - n, "; more ranks with sharding, a smaller data.seq_len, or "
             "LoRA (finetune.lora_r) also shrink it; `retort plan -c CONFIG` prints every choice");
    return err_set("this run needs %s (%zu bytes) per rank but %s is %s (%zu bytes): %s (%d %s per "
                   "micro-step of %d tokens, %s, %d rank%s). What would fit: %s",
                   human(b.total), b.total, where, human(available), available, line, ch.micro_batch,
                   ch.micro_batch == 1 ? "item" : "items", pm->T,
                   pm->cuda ? "cuda bf16" : "cpu fp32", ch.world, ch.world == 1 ? "" : "s", advice);
}
