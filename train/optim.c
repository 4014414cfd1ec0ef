/* train/optim.c — AdamW over the model's parameter table; schedules; clipping.
 *
 * The optimizer state (m, v and, for lower-precision parameters, the fp32
 * master weights) covers the trainable tensors only, in the model's gradient
 * layout (ParamInfo.grad_offset), so frozen tensors cost no optimizer memory
 * and are never touched by the update.
 *
 * ZeRO-1 (optim_shard): each of W ranks keeps m and v for its contiguous
 * shard [begin, end) of the gradient layout only (train/dist.h
 * dist_shard_range). The trainer reduce-scatters the gradients instead of
 * all-reducing them; the global norm is the sum over shards; each rank
 * updates the parameters of its shard and the updated parameters are
 * all-gathered. The state moves to and from checkpoints whole (gathered), so
 * a checkpoint does not depend on how many ranks wrote it. On the CPU the
 * trainer reduce-scatters the gradients and the parameters are all-gathered
 * through the host; on a device (CUDA, bf16 parameters) the fp32 master
 * weights are sharded too, the gradients stay all-reduced whole (NCCL), and
 * each rank's updated parameter pieces are broadcast from their owners
 * (dist_broadcast_pieces): compiled, not yet run on a GPU.
 *
 * ZeRO-2 (optim_shard_grads) adds the gradients to the shard: the rank keeps
 * a persistent fp32 gradient shard [begin, end) and the model keeps the
 * global tensors' gradients plus one block's (model.h gpt_set_grads_ready).
 * The model's hook hands over each block's gradient as soon as backward has
 * finished it, and grads_ready reduce-scatters it into the shard (adding, so
 * data.grad_accum and the several backwards of DPO accumulate there).
 * Clipping and AdamW then read the shard; the rest is ZeRO-1's. On a
 * device (CUDA) the shard lives in device memory and each unit's runs go
 * through dist_reduce_scatter_add_device (a group of ncclReduce to the
 * owners, added into the shard on the GPU): compiled, not yet run on a GPU.
 *
 * ZeRO-3 (optim_shard_params) adds the parameters: the rank keeps those of
 * its shard of the gradient layout (pshard), AdamW updates them there, and
 * the model gathers each block's from every rank's pshard into its window
 * when it needs them (params_gather). The global tensors stay whole in the
 * model, so after a step their updated pieces are all-gathered; the block
 * tensors never are. Frozen tensors stay whole in the model (not sharded).
 * On a device the shard is in the compute type (bf16) beside the fp32
 * master shard, and the pieces move with NCCL broadcasts from their owners
 * (pshard_to_device): compiled, not yet run on a GPU. */
#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "train/dist.h"
#include "util/util.h"

struct Optimizer {
    GPT *model;
    const Backend *be;
    AdamWConfig cfg;
    float *m, *v;   /* backend memory, n_state fp32 each, in the gradient layout */
    float *master;  /* fp32 master weights when parameters are lower precision, else NULL */
    size_t n_state; /* gpt_grad_size at creation */
    int layout;     /* gpt_grad_layout_version at creation */
    int step;
    int sharded;    /* ZeRO-1: m and v hold [sh_begin, sh_end) of the layout */
    size_t sh_begin, sh_end;
    int rank, world; /* this rank and the ranks of the sharding */
    float *gshard;  /* ZeRO-2: the reduced gradient of [sh_begin, sh_end), else NULL */
    float *pshard;  /* ZeRO-3: the parameters of [sh_begin, sh_end), else NULL */
};

/* The part of tensor p's gradient range [go, go+numel) inside [b, e):
 * returns its length and the element offset within the tensor in *off. */
static size_t overlap(const ParamInfo *p, size_t b, size_t e, size_t *off) {
    size_t lo = p->grad_offset > b ? p->grad_offset : b;
    size_t hi = p->grad_offset + p->numel < e ? p->grad_offset + p->numel : e;
    *off = lo - p->grad_offset;
    return hi > lo ? hi - lo : 0;
}

int schedule_from_name(const char *name, Schedule *out) {
    if (!strcmp(name, "cosine")) *out = SCHED_COSINE;
    else if (!strcmp(name, "linear")) *out = SCHED_LINEAR;
    else if (!strcmp(name, "constant")) *out = SCHED_CONSTANT;
    else return err_set("unknown schedule '%s'; choose cosine, linear or constant", name);
    return 0;
}

int warmup_shape_from_name(const char *name, WarmupShape *out) {
    if (!strcmp(name, "linear")) *out = WARMUP_LINEAR;
    else if (!strcmp(name, "log")) *out = WARMUP_LOG;
    else return err_set("unknown warmup shape '%s'; choose linear or log", name);
    return 0;
}

double lr_at(const LrSchedule *s, int step) {
    if (s->warmup_shape == WARMUP_LOG && s->warmup_steps > 0) {
        /* DeepSpeed's WarmupLR: the engine steps it after each optimizer
         * step, so step s runs at its iteration s - 2 (the first at the rate
         * it starts with, min_lr = 0); lr = min + delta * gamma with gamma =
         * inverse_log_warm_up * log(iteration + 1), in that order */
        int W = s->warmup_steps < 2 ? 2 : s->warmup_steps, it = step - 2;
        if (it < 0) return 0.0;
        if (it < W) return 0.0 + s->lr * ((1.0 / log((double)W)) * log((double)it + 1));
        if (s->schedule == SCHED_CONSTANT) return s->lr;
    }
    if (s->hf_convention) step--;
    if (step <= s->warmup_steps && s->warmup_steps > 0)
        return s->lr * (double)step / (double)s->warmup_steps;
    if (s->schedule == SCHED_CONSTANT) return s->lr;
    int decay_steps = s->total_steps - s->warmup_steps;
    double progress = decay_steps > 0 ? (double)(step - s->warmup_steps) / decay_steps : 1.0;
    if (progress > 1.0) progress = 1.0;
    if (progress < 0.0) progress = 0.0;
    double frac = s->schedule == SCHED_COSINE ? 0.5 * (1.0 + cos(M_PI * progress)) : 1.0 - progress;
    return s->min_lr + (s->lr - s->min_lr) * frac;
}

int warmup_steps_for_ratio(double ratio, int total_steps) {
    return (int)ceil((double)total_steps * ratio);
}

static float *param_at(const Optimizer *o, const ParamInfo *p) {
    return (float *)((char *)gpt_params(o->model) + p->offset * o->be->act_size);
}

/* gradients are fp32 on every backend (model/backend.h) */
static float *grad_at(const Optimizer *o, const ParamInfo *p) {
    return gpt_grads(o->model) + p->grad_offset;
}

static void check_layout(const Optimizer *o) {
    if (gpt_grad_layout_version(o->model) != o->layout) {
        fprintf(stderr, "retort: the model's trainable tensors changed after the optimizer was "
                        "created; set them (and attach LoRA) before optim_create\n");
        abort();
    }
}

void optim_sync_master(Optimizer *o) {
    if (!o->master) return;
    check_layout(o);
    if (o->pshard) { /* ZeRO-3: the model holds no whole buffer; the shard has the range */
        size_t len = o->sh_end - o->sh_begin;
        float *host = xmalloc((len > 0 ? len : 1) * sizeof(float));
        o->be->download_f32(host, o->pshard, len);
        o->be->to_device(o->master, host, len * sizeof(float));
        free(host);
        return;
    }
    size_t n = gpt_flat_size(o->model);
    float *host = xmalloc(n * sizeof(float));
    float *packed = xcalloc(o->n_state ? o->n_state : 1, sizeof(float));
    gpt_copy_params_to_host(o->model, host, n);
    for (int i = 0; i < gpt_num_tensors(o->model); i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        if (p->trainable)
            memcpy(packed + p->grad_offset, host + p->offset, p->numel * sizeof(float));
    }
    if (o->sharded) /* ZeRO-1: this rank's range only */
        o->be->to_device(o->master, packed + o->sh_begin,
                         (o->sh_end - o->sh_begin) * sizeof(float));
    else
        o->be->to_device(o->master, packed, o->n_state * sizeof(float));
    free(packed);
    free(host);
}

Optimizer *optim_create(GPT *model, const AdamWConfig *cfg) {
    Optimizer *o = xcalloc(1, sizeof *o);
    o->model = model;
    o->be = gpt_backend(model);
    o->cfg = *cfg;
    o->n_state = gpt_grad_size(model);
    o->layout = gpt_grad_layout_version(model);
    size_t bytes = (o->n_state > 0 ? o->n_state : 1) * sizeof(float);
    o->m = o->be->alloc(bytes);
    o->v = o->be->alloc(bytes);
    if (!o->m || !o->v) {
        optim_free(o);
        return NULL;
    }
    if (o->be->act_size != sizeof(float)) {
        o->master = o->be->alloc(bytes);
        if (!o->master) {
            optim_free(o);
            return NULL;
        }
        optim_sync_master(o);
    }
    return o;
}

void optim_free(Optimizer *o) {
    if (!o) return;
    if (o->m) o->be->release(o->m);
    if (o->v) o->be->release(o->v);
    if (o->master) o->be->release(o->master);
    if (o->pshard) o->be->release(o->pshard); /* the model keeps its units: it goes next */
    else if (o->gshard) gpt_set_grads_ready(o->model, NULL, NULL);
    if (o->gshard) o->be->release(o->gshard);
    free(o);
}

int optim_step_count(const Optimizer *o) { return o->step; }
void optim_set_step_count(Optimizer *o, int step) { o->step = step; }

/* One sum_squares over the whole gradient buffer: its padding between tensors
 * is always zero (the invariant of model/model.c relayout_grads), so this is
 * the sum over the tensors, with one synchronisation on a device backend
 * instead of one per tensor. */
double optim_clip_grad_norm(Optimizer *o) {
    check_layout(o);
    size_t len = o->sh_end - o->sh_begin;
    float *g = o->gshard ? o->gshard : gpt_grads(o->model);
    double ss;
    if (o->gshard && strcmp(o->be->name, "cpu") != 0)
        dist_wait(); /* the last unit's reduction, watched with the timeout */
    if (o->gshard) /* ZeRO-2: the shard is all there is */
        ss = dist_sum_f64(o->be->sum_squares(g, len));
    else if (o->sharded) /* this rank's shard of the reduced gradient, then over ranks */
        ss = dist_sum_f64(o->be->sum_squares(g + o->sh_begin, len));
    else
        ss = o->be->sum_squares(g, o->n_state);
    double norm = sqrt(ss);
    if (o->cfg.grad_clip > 0 && o->n_state > 0) {
        double coef = o->cfg.grad_clip / (norm + 1e-6);
        if (coef < 1.0) o->be->scale_inplace(g, (float)coef, o->gshard ? len : o->n_state);
    }
    return norm;
}

int optim_shard(Optimizer *o, int rank, int world) {
    size_t b, e;
    dist_shard_range(o->n_state, rank, world, &b, &e);
    size_t bytes = (e > b ? e - b : 1) * sizeof(float);
    o->be->release(o->m);
    o->be->release(o->v);
    o->m = o->be->alloc(bytes);
    o->v = o->be->alloc(bytes);
    int had_master = o->master != NULL;
    if (had_master) { /* lower-precision parameters: the fp32 master weights too */
        o->be->release(o->master);
        o->master = o->be->alloc(bytes);
    }
    if (!o->m || !o->v || (had_master && !o->master)) return -1;
    o->be->zero(o->m, bytes);
    o->be->zero(o->v, bytes);
    o->sharded = 1;
    o->sh_begin = b;
    o->sh_end = e;
    o->rank = rank;
    o->world = world;
    optim_sync_master(o);
    return 0;
}

/* A device's [lo, hi) of one backward's gradient (src, fp32 on the device)
 * added into the shard where they meet, through host copies: what a rank
 * adds when the others' shares are zero (tests run one process as one rank
 * of o->world; never a training run's path). */
static void own_share_device(Optimizer *o, const float *src, size_t lo, size_t hi) {
    size_t b = lo > o->sh_begin ? lo : o->sh_begin, e = hi < o->sh_end ? hi : o->sh_end;
    if (b >= e) return;
    size_t len = e - b;
    float *part = xmalloc(len * sizeof(float)), *acc = xmalloc(len * sizeof(float));
    o->be->to_host(part, src + (b - lo), len * sizeof(float));
    o->be->to_host(acc, o->gshard + (b - o->sh_begin), len * sizeof(float));
    for (size_t x = 0; x < len; x++) acc[x] += part[x];
    o->be->to_device(o->gshard + (b - o->sh_begin), acc, len * sizeof(float));
    free(part);
    free(acc);
}

/* The model's hook (gpt_set_grads_ready): unit's gradient of one backward,
 * summed over ranks, added into each rank's shard. */
static void grads_ready(void *ctx, GPT *m, int unit) {
    Optimizer *o = ctx;
    const GptGradRun *runs;
    int n = gpt_grad_unit_runs(m, unit, &runs);
    float *data = gpt_grad_unit_data(m, unit);
    int device = strcmp(o->be->name, "cpu") != 0;
    /* NCCL: the unit above's reduction first, and the global unit's (the
     * backward's last) before the hook returns, each watched with
     * dist.timeout_s; a hang would otherwise surface only in the next copy
     * from the compute stream, which waits forever. The one window serialises
     * a block's backward and its reduction anyway. */
    if (device) dist_wait();
    for (int k = 0; k < n; k++) {
        const GptGradRun *r = &runs[k];
        if (device && dist_size() == o->world && o->world > 1) { /* NCCL: to each owner */
            dist_reduce_scatter_add_device(data + r->at, r->lo, r->hi, o->n_state, o->gshard);
            continue;
        }
        if (device) { /* one process standing for one rank: its own share, through the host */
            own_share_device(o, data + r->at, r->lo, r->hi);
            continue;
        }
        if (dist_size() == o->world) {
            dist_reduce_scatter_add_f32(data + r->at, r->lo, r->hi, o->n_state, o->gshard);
            continue;
        }
        /* one process standing for one rank of o->world (tests of the memory):
         * the shard gets this process's own share, as if the others' were zero */
        size_t lo = r->lo > o->sh_begin ? r->lo : o->sh_begin;
        size_t hi = r->hi < o->sh_end ? r->hi : o->sh_end;
        for (size_t x = lo; x < hi; x++) o->gshard[x - o->sh_begin] += data[r->at + x - r->lo];
    }
    if (device && unit == gpt_config(m)->n_layer) dist_wait();
}

int optim_shard_grads(Optimizer *o) {
    if (!o->sharded) return err_set("dist.zero 2 shards the gradients of a sharded optimizer; "
                                    "call optim_shard first");
    size_t len = o->sh_end - o->sh_begin;
    o->gshard = o->be->alloc((len > 0 ? len : 1) * sizeof(float));
    if (!o->gshard) return -1;
    o->be->zero(o->gshard, (len > 0 ? len : 1) * sizeof(float));
    gpt_set_grads_ready(o->model, grads_ready, o);
    return 0;
}

int optim_grads_sharded(const Optimizer *o) { return o->gshard != NULL; }

static int on_device(const Optimizer *o) { return strcmp(o->be->name, "cpu") != 0; }

/* ZeRO-3 on a device: layout elements [lo, hi) of the parameters, in the
 * compute type, from the owners' shards to dst (device memory) on every
 * rank: one NCCL group of broadcasts, one per owner whose shard meets the
 * range (dist_gather_pieces). One process standing for one rank, or for the
 * whole world: its own piece through the host, and the rest of dst zero
 * with zero_rest, else as it was. */
static void pshard_to_device(Optimizer *o, size_t lo, size_t hi, void *dst, int zero_rest) {
    size_t X = o->be->act_size;
    if (lo >= hi) return;
    if (dist_size() == o->world && o->world > 1) {
        DistGatherPiece *pieces = xmalloc((size_t)o->world * sizeof(DistGatherPiece));
        int n = 0;
        for (int q = 0; q < o->world; q++) {
            size_t qb, qe;
            dist_shard_range(o->n_state, q, o->world, &qb, &qe);
            size_t b = qb > lo ? qb : lo, e = qe < hi ? qe : hi;
            if (b >= e) continue; /* every rank skips the same owners */
            const void *src = q == o->rank ? (char *)o->pshard + (b - qb) * X : NULL;
            pieces[n++] = (DistGatherPiece){src, (char *)dst + (b - lo) * X, (e - b) * X, q};
        }
        dist_gather_pieces(pieces, n);
        free(pieces);
        return;
    }
    if (zero_rest) o->be->zero(dst, (hi - lo) * X);
    size_t b = lo > o->sh_begin ? lo : o->sh_begin, e = hi < o->sh_end ? hi : o->sh_end;
    if (b >= e) return;
    char *tmp = xmalloc((e - b) * X);
    o->be->to_host(tmp, (char *)o->pshard + (b - o->sh_begin) * X, (e - b) * X);
    o->be->to_device((char *)dst + (b - lo) * X, tmp, (e - b) * X);
    free(tmp);
}

/* The model's hook (gpt_set_params_gather): block `unit`'s trainable
 * parameters from every rank's shard into the window, run by run. */
static void params_gather(void *ctx, GPT *m, int unit, float *window) {
    Optimizer *o = ctx;
    const GptGradRun *runs;
    int n = gpt_grad_unit_runs(m, unit, &runs);
    for (int k = 0; k < n; k++) {
        const GptGradRun *r = &runs[k];
        if (on_device(o)) { /* the window is in the compute type */
            pshard_to_device(o, r->lo, r->hi, (char *)window + r->at * o->be->act_size, 1);
            continue;
        }
        if (dist_size() == o->world) {
            dist_all_gather_range_f32(o->pshard, r->lo, r->hi, o->n_state, window + r->at);
            continue;
        }
        /* one process standing for one rank (tests): its own piece, zeros elsewhere */
        memset(window + r->at, 0, (r->hi - r->lo) * sizeof(float));
        size_t lo = r->lo > o->sh_begin ? r->lo : o->sh_begin;
        size_t hi = r->hi < o->sh_end ? r->hi : o->sh_end;
        for (size_t x = lo; x < hi; x++) window[r->at + x - r->lo] = o->pshard[x - o->sh_begin];
    }
}

/* This rank's range of the trainable tensors from the model's whole buffer
 * (host order: the gradient layout, alignment tails zero). */
static void pshard_from_whole(Optimizer *o) {
    size_t b = o->sh_begin, e = o->sh_end, off, len = e - b, X = o->be->act_size;
    o->be->zero(o->pshard, (len > 0 ? len : 1) * X);
    for (int i = 0; i < gpt_num_tensors(o->model); i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        if (!p->trainable) continue;
        size_t n = overlap(p, b, e, &off);
        if (n && on_device(o)) { /* compute-type bytes, through the host */
            char *tmp = xmalloc(n * X);
            o->be->to_host(tmp, (char *)param_at(o, p) + off * X, n * X);
            o->be->to_device((char *)o->pshard + (p->grad_offset + off - b) * X, tmp, n * X);
            free(tmp);
            continue;
        }
        if (n) memcpy(o->pshard + (p->grad_offset + off - b), param_at(o, p) + off,
                      n * sizeof(float));
    }
}

int optim_shard_params(Optimizer *o) {
    if (!o->gshard) return err_set("dist.zero 3 shards the parameters of sharded gradients; "
                                   "call optim_shard_grads first");
    size_t len = o->sh_end - o->sh_begin;
    /* in the compute type: bf16 on CUDA, beside the fp32 master shard */
    o->pshard = o->be->alloc((len > 0 ? len : 1) * o->be->act_size);
    if (!o->pshard) return -1;
    pshard_from_whole(o);
    if (gpt_set_params_gather(o->model, params_gather, o) != 0) {
        o->be->release(o->pshard);
        o->pshard = NULL;
        return -1;
    }
    return 0;
}

int optim_params_sharded(const Optimizer *o) { return o->pshard != NULL; }

size_t optim_param_bytes(const Optimizer *o) {
    size_t len = o->sh_end - o->sh_begin;
    return gpt_param_bytes(o->model) + (o->pshard ? (len > 0 ? len : 1) * o->be->act_size : 0);
}

int optim_params_unshard(Optimizer *o, int gather) {
    if (!o->pshard) return 0;
    if (gpt_params_unshard(o->model) != 0) return -1;
    if (!gather) return 0;
    /* each block tensor straight from the owners' shards into its place */
    GPT *m = o->model;
    int L = gpt_config(m)->n_layer;
    size_t b = o->sh_begin, e = o->sh_end, off;
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        int u = gpt_tensor_unit(m, i);
        if (!p->trainable || u < 0 || u >= L) continue;
        if (on_device(o)) {
            pshard_to_device(o, p->grad_offset, p->grad_offset + p->numel, param_at(o, p), 0);
            continue;
        }
        if (dist_size() == o->world) {
            dist_all_gather_range_f32(o->pshard, p->grad_offset, p->grad_offset + p->numel,
                                      o->n_state, param_at(o, p));
            continue;
        }
        size_t n = overlap(p, b, e, &off); /* one process standing for one rank: its piece */
        if (n) memcpy(param_at(o, p) + off, o->pshard + (p->grad_offset + off - b),
                      n * sizeof(float));
    }
    return 0;
}

void optim_params_reshard(Optimizer *o) {
    if (!o->pshard) return;
    pshard_from_whole(o);
    gpt_params_reshard(o->model);
}

void optim_zero_grad(Optimizer *o) {
    gpt_zero_grad(o->model);
    if (o->gshard) {
        size_t len = o->sh_end - o->sh_begin;
        o->be->zero(o->gshard, (len > 0 ? len : 1) * sizeof(float));
    }
}

/* ZeRO-3 step: AdamW on the parameter shard in place (the same elements and
 * arithmetic as ZeRO-1/2's, so the same bits); then the global tensors'
 * pieces to every rank, which hold them whole. */
static void sharded_step_params(Optimizer *o, double lr, const float *grads) {
    size_t b = o->sh_begin, e = o->sh_end, off, X = o->be->act_size;
    GPT *m = o->model;
    int L = gpt_config(m)->n_layer;
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (!p->trainable) continue;
        size_t n = overlap(p, b, e, &off);
        if (n == 0) continue;
        double wd = p->decay ? o->cfg.weight_decay : 0.0;
        size_t k = p->grad_offset + off;
        /* on a device: bf16 parameters from the fp32 master shard */
        o->be->adamw_update((float *)((char *)o->pshard + (k - b) * X),
                            o->master ? o->master + (k - b) : NULL, grads + (k - b),
                            o->m + (k - b), o->v + (k - b), n, lr, o->cfg.beta1, o->cfg.beta2,
                            o->cfg.eps, wd, o->step);
    }
    for (int i = 0; i < gpt_num_tensors(m); i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (!p->trainable || gpt_tensor_unit(m, i) != L) continue;
        float *dst = gpt_tensor_data(m, i);
        size_t lo = p->grad_offset, hi = p->grad_offset + p->numel;
        if (on_device(o)) {
            pshard_to_device(o, lo, hi, dst, 0);
            continue;
        }
        if (dist_size() == o->world) {
            dist_all_gather_range_f32(o->pshard, lo, hi, o->n_state, dst);
            continue;
        }
        size_t n = overlap(p, b, e, &off); /* one process standing for one rank: its piece */
        if (n) memcpy(dst + off, o->pshard + (p->grad_offset + off - b), n * sizeof(float));
    }
    gpt_params_changed(m);
}

/* ZeRO-1 step: AdamW on this rank's shard, then every rank's updated
 * parameters to every rank. */
static void sharded_step(Optimizer *o, double lr) {
    size_t b = o->sh_begin, e = o->sh_end, off;
    /* grads[k - b] is layout element k of this rank's shard */
    float *grads = o->gshard ? o->gshard : gpt_grads(o->model) + b;
    if (o->pshard) {
        sharded_step_params(o, lr, grads);
        return;
    }
    float *packed = xcalloc(o->n_state ? o->n_state : 1, sizeof(float)); /* gradient layout */
    for (int i = 0; i < gpt_num_tensors(o->model); i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        if (!p->trainable) continue;
        size_t n = overlap(p, b, e, &off);
        if (n == 0) continue;
        double wd = p->decay ? o->cfg.weight_decay : 0.0;
        size_t k = p->grad_offset + off; /* in the layout */
        o->be->adamw_update(param_at(o, p) + off, NULL, grads + (k - b), o->m + (k - b),
                            o->v + (k - b), n, lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps, wd,
                            o->step);
        memcpy(packed + k, param_at(o, p) + off, n * sizeof(float));
    }
    dist_all_gather_f32(packed, o->n_state);
    for (int i = 0; i < gpt_num_tensors(o->model); i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        if (p->trainable)
            memcpy(param_at(o, p), packed + p->grad_offset, p->numel * sizeof(float));
    }
    free(packed);
}

/* ZeRO-1 on a device backend (CUDA): the gradients were all-reduced whole
 * (trainer.c reduce_gradients), or with ZeRO-2 reduced into the shard
 * during backward, so each rank runs AdamW on its range with
 * its shard of m, v and the fp32 master weights, writing the parameters of
 * that range in the compute type; then each piece goes from its owner to
 * every rank (dist_broadcast_pieces), one per tensor and owner. */
static void sharded_step_device(Optimizer *o, double lr) {
    size_t b = o->sh_begin, off, X = o->be->act_size;
    /* grads[k - b] is layout element k: the ZeRO-2 shard, or the whole buffer */
    float *grads = o->gshard ? o->gshard : gpt_grads(o->model) + b;
    if (o->pshard) { /* ZeRO-3: the shard's update, the global tensors gathered */
        sharded_step_params(o, lr, grads);
        return;
    }
    int W = o->world, n_pieces = 0, cap = gpt_num_tensors(o->model) + W;
    DistPiece *pieces = xmalloc((size_t)cap * sizeof(DistPiece));
    for (int i = 0; i < gpt_num_tensors(o->model); i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        if (!p->trainable) continue;
        for (int q = 0; q < W; q++) { /* the owners of this tensor's pieces */
            size_t qb, qe;
            dist_shard_range(o->n_state, q, W, &qb, &qe);
            size_t n = overlap(p, qb, qe, &off);
            if (n == 0) continue;
            float *param = (float *)((char *)param_at(o, p) + off * X);
            if (q == o->rank) {
                double wd = p->decay ? o->cfg.weight_decay : 0.0;
                size_t k = p->grad_offset + off;
                o->be->adamw_update(param, o->master + (k - b), grads + (k - b), o->m + (k - b),
                                    o->v + (k - b), n, lr, o->cfg.beta1, o->cfg.beta2,
                                    o->cfg.eps, wd, o->step);
            }
            if (n_pieces == cap) {
                cap *= 2;
                pieces = xrealloc(pieces, (size_t)cap * sizeof(DistPiece));
            }
            pieces[n_pieces++] = (DistPiece){param, n * X, q};
        }
    }
    if (dist_size() == W) dist_broadcast_pieces(pieces, n_pieces);
    free(pieces);
}

void optim_step(Optimizer *o, double lr) {
    check_layout(o);
    o->step++;
    if (o->sharded && strcmp(o->be->name, "cpu") != 0) {
        sharded_step_device(o, lr);
        return;
    }
    if (o->sharded) {
        sharded_step(o, lr);
        return;
    }
    for (int i = 0; i < gpt_num_tensors(o->model); i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        if (!p->trainable) continue;
        double wd = p->decay ? o->cfg.weight_decay : 0.0;
        size_t k = p->grad_offset;
        o->be->adamw_update(param_at(o, p), o->master ? o->master + k : NULL, grad_at(o, p),
                            o->m + k, o->v + k, p->numel, lr, o->cfg.beta1, o->cfg.beta2,
                            o->cfg.eps, wd, o->step);
    }
}

/* ---------------------------------------------------------------- non-finite values */

/* Why not a NaN flag out of adamw_update? It would be cheaper still (no extra
 * pass), but it changes the op contract of both backends and their kernels;
 * one sum_squares at checkpoint time, and on a bad step, costs nothing per step. */
int optim_params_finite(Optimizer *o) {
    double ss;
    if (o->pshard && !o->master) /* ZeRO-3 (fp32): the updated parameters are this rank's shard */
        ss = o->be->sum_squares(o->pshard, o->sh_end - o->sh_begin);
    else if (o->master && o->sharded) /* this rank's updates; dist_any combines the ranks */
        ss = o->be->sum_squares(o->master, o->sh_end - o->sh_begin);
    else if (o->master) ss = o->be->sum_squares(o->master, o->n_state);
    else ss = o->be->sum_squares(gpt_params(o->model), gpt_flat_size(o->model)); /* fp32 */
    return isfinite(ss);
}

static int all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

const char *optim_first_nonfinite_param(Optimizer *o) {
    if (o->pshard) { /* ZeRO-3: the tensors this rank's shard holds pieces of (no collective) */
        size_t b = o->sh_begin, off, len = o->sh_end - o->sh_begin;
        float *shard = xmalloc((len > 0 ? len : 1) * sizeof(float)); /* fp32, on the host */
        o->be->download_f32(shard, o->pshard, len);
        const char *name = NULL;
        for (int i = 0; i < gpt_num_tensors(o->model) && !name; i++) {
            const ParamInfo *p = gpt_tensor(o->model, i);
            size_t n = p->trainable ? overlap(p, b, o->sh_end, &off) : 0;
            if (n && !all_finite(shard + (p->grad_offset + off - b), n)) name = p->name;
        }
        free(shard);
        return name;
    }
    size_t n = gpt_flat_size(o->model);
    float *host = xmalloc((n ? n : 1) * sizeof(float));
    gpt_copy_params_to_host(o->model, host, n);
    const char *name = NULL;
    for (int i = 0; i < gpt_num_tensors(o->model) && !name; i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        if (!all_finite(host + p->offset, p->numel)) name = p->name;
    }
    free(host);
    return name;
}

const char *optim_first_nonfinite_grad(Optimizer *o) {
    check_layout(o);
    float *host = xcalloc(o->n_state ? o->n_state : 1, sizeof(float));
    if (o->gshard) { /* ZeRO-2: the shards, gathered on the host */
        o->be->to_host(host + o->sh_begin, o->gshard, (o->sh_end - o->sh_begin) * sizeof(float));
        if (dist_size() == o->world) dist_all_gather_f32(host, o->n_state);
    } else {
        /* ZeRO-1 on the CPU: only this rank's shard is reduced; gather the
         * others' (on a device the all-reduce gave every rank all of it) */
        if (o->sharded && !strcmp(o->be->name, "cpu"))
            dist_all_gather_f32(gpt_grads(o->model), o->n_state);
        o->be->to_host(host, gpt_grads(o->model), o->n_state * sizeof(float));
    }
    const char *name = NULL;
    for (int i = 0; i < gpt_num_tensors(o->model) && !name; i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        if (p->trainable && !all_finite(host + p->grad_offset, p->numel)) name = p->name;
    }
    free(host);
    return name;
}

void optim_grads_to_host(Optimizer *o, float *host) {
    check_layout(o);
    if (o->gshard) {
        memset(host, 0, o->n_state * sizeof(float));
        o->be->to_host(host + o->sh_begin, o->gshard, (o->sh_end - o->sh_begin) * sizeof(float));
        if (dist_size() == o->world) dist_all_gather_f32(host, o->n_state);
        return;
    }
    o->be->to_host(host, gpt_grads(o->model), o->n_state * sizeof(float));
    if (o->sharded && !strcmp(o->be->name, "cpu") && dist_size() == o->world)
        dist_all_gather_f32(host, o->n_state);
}

size_t optim_state_size(const Optimizer *o) { return o->n_state; }

size_t optim_state_bytes(const Optimizer *o) {
    size_t n = o->sharded ? o->sh_end - o->sh_begin : o->n_state;
    return n * sizeof(float) * (o->master ? 3 : 2);
}

size_t optim_train_state_bytes(const Optimizer *o) {
    return optim_state_bytes(o) + optim_grad_bytes(o);
}

size_t optim_grad_bytes(const Optimizer *o) {
    size_t shard = o->gshard ? (o->sh_end - o->sh_begin) * sizeof(float) : 0;
    return shard + gpt_grad_bytes(o->model);
}

void optim_moments_to_host(Optimizer *o, float *m_host, float *v_host) {
    if (o->sharded) { /* collective: every rank calls, every rank gets the whole state */
        size_t b = o->sh_begin, n = o->sh_end - o->sh_begin;
        o->be->to_host(m_host + b, o->m, n * sizeof(float));
        o->be->to_host(v_host + b, o->v, n * sizeof(float));
        if (dist_size() == o->world) {
            dist_all_gather_f32(m_host, o->n_state);
            dist_all_gather_f32(v_host, o->n_state);
        }
        return;
    }
    size_t bytes = o->n_state * sizeof(float);
    o->be->to_host(m_host, o->m, bytes);
    o->be->to_host(v_host, o->v, bytes);
}

void optim_moments_to_device(Optimizer *o, const float *m_host, const float *v_host) {
    if (o->sharded) { /* keep this rank's shard of the whole state */
        size_t b = o->sh_begin, n = o->sh_end - o->sh_begin;
        o->be->to_device(o->m, m_host + b, n * sizeof(float));
        o->be->to_device(o->v, v_host + b, n * sizeof(float));
        return;
    }
    size_t bytes = o->n_state * sizeof(float);
    o->be->to_device(o->m, m_host, bytes);
    o->be->to_device(o->v, v_host, bytes);
}

int optim_is_sharded(const Optimizer *o) { return o->sharded; }

int optim_has_master(const Optimizer *o) { return o->master != NULL; }

void optim_master_to_host(Optimizer *o, float *host) {
    if (!o->master) return;
    if (o->sharded) { /* collective, as optim_moments_to_host */
        size_t b = o->sh_begin, n = o->sh_end - o->sh_begin;
        o->be->to_host(host + b, o->master, n * sizeof(float));
        if (dist_size() == o->world) dist_all_gather_f32(host, o->n_state);
        return;
    }
    o->be->to_host(host, o->master, o->n_state * sizeof(float));
}

void optim_master_to_device(Optimizer *o, const float *host) {
    if (!o->master) return;
    if (o->sharded) {
        size_t b = o->sh_begin, n = o->sh_end - o->sh_begin;
        o->be->to_device(o->master, host + b, n * sizeof(float));
        return;
    }
    o->be->to_device(o->master, host, o->n_state * sizeof(float));
}
