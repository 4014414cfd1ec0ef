/* train/optim.c — AdamW over the model's parameter table; schedules; clipping. */
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/backend.h"
#include "train/util.h"

struct Optimizer {
    GPT *model;
    const Backend *be;
    AdamWConfig cfg;
    float *m, *v;   /* backend memory, gpt_flat_size fp32 each */
    float *master;  /* fp32 master weights when parameters are lower precision, else NULL */
    int step;
};

int schedule_from_name(const char *name, Schedule *out) {
    if (!strcmp(name, "cosine")) *out = SCHED_COSINE;
    else if (!strcmp(name, "linear")) *out = SCHED_LINEAR;
    else if (!strcmp(name, "constant")) *out = SCHED_CONSTANT;
    else return err_set("unknown schedule '%s'; choose cosine, linear or constant", name);
    return 0;
}

double lr_at(const LrSchedule *s, int step) {
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

/* Compute-type tensor i of a flat buffer (params or grads). */
static float *at(const Optimizer *o, float *base, const ParamInfo *p) {
    return (float *)((char *)base + p->offset * o->be->act_size);
}

void optim_sync_master(Optimizer *o) {
    if (!o->master) return;
    size_t n = gpt_flat_size(o->model);
    float *host = xmalloc(n * sizeof(float));
    gpt_copy_params_to_host(o->model, host, n);
    o->be->to_device(o->master, host, n * sizeof(float));
    free(host);
}

Optimizer *optim_create(GPT *model, const AdamWConfig *cfg) {
    Optimizer *o = xcalloc(1, sizeof *o);
    o->model = model;
    o->be = gpt_backend(model);
    o->cfg = *cfg;
    size_t n = gpt_flat_size(model);
    o->m = o->be->alloc(n * sizeof(float));
    o->v = o->be->alloc(n * sizeof(float));
    if (!o->m || !o->v) {
        optim_free(o);
        return NULL;
    }
    if (o->be->act_size != sizeof(float)) {
        o->master = o->be->alloc(n * sizeof(float));
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
    free(o);
}

int optim_step_count(const Optimizer *o) { return o->step; }
void optim_set_step_count(Optimizer *o, int step) { o->step = step; }

double optim_clip_grad_norm(Optimizer *o) {
    double ss = 0;
    float *grads = gpt_grads(o->model);
    for (int i = 0; i < gpt_num_tensors(o->model); i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        ss += o->be->sum_squares(at(o, grads, p), p->numel);
    }
    double norm = sqrt(ss);
    if (o->cfg.grad_clip > 0) {
        double coef = o->cfg.grad_clip / (norm + 1e-6);
        if (coef < 1.0) o->be->scale_inplace(grads, (float)coef, gpt_flat_size(o->model));
    }
    return norm;
}

void optim_step(Optimizer *o, double lr) {
    o->step++;
    float *params = gpt_params(o->model), *grads = gpt_grads(o->model);
    for (int i = 0; i < gpt_num_tensors(o->model); i++) {
        const ParamInfo *p = gpt_tensor(o->model, i);
        double wd = p->decay ? o->cfg.weight_decay : 0.0;
        o->be->adamw_update(at(o, params, p), o->master ? o->master + p->offset : NULL,
                            at(o, grads, p), o->m + p->offset, o->v + p->offset, p->numel, lr,
                            o->cfg.beta1, o->cfg.beta2, o->cfg.eps, wd, o->step);
    }
}

void optim_moments_to_host(Optimizer *o, float *m_host, float *v_host) {
    size_t bytes = gpt_flat_size(o->model) * sizeof(float);
    o->be->to_host(m_host, o->m, bytes);
    o->be->to_host(v_host, o->v, bytes);
}

void optim_moments_to_device(Optimizer *o, const float *m_host, const float *v_host) {
    size_t bytes = gpt_flat_size(o->model) * sizeof(float);
    o->be->to_device(o->m, m_host, bytes);
    o->be->to_device(o->v, v_host, bytes);
}

int optim_has_master(const Optimizer *o) { return o->master != NULL; }

void optim_master_to_host(Optimizer *o, float *host) {
    if (o->master) o->be->to_host(host, o->master, gpt_flat_size(o->model) * sizeof(float));
}

void optim_master_to_device(Optimizer *o, const float *host) {
    if (o->master) o->be->to_device(o->master, host, gpt_flat_size(o->model) * sizeof(float));
}
