/* train/grad_overlap.c — see grad_overlap.h: the per-block "gradients
 * done" hook collects the step's last backward's finished ranges into
 * buckets and starts their reductions while the blocks below compute.
 *
 * A block's ranges (gpt_grad_unit_runs: its base tensors, and its LoRA
 * adapters) arrive from the top block down, so consecutive blocks' ranges
 * touch in the layout and a bucket merges them into as few collectives as
 * possible. The global unit (embeddings, final norm, head) comes last and
 * flushes what is left. Which backward is the last: every objective runs one
 * backward per micro-step (data.grad_accum of them per step); the hook counts
 * them, and a step that runs more after its reductions started is a bug that
 * would sum unfinished gradients, so it aborts. */
#include "train/grad_overlap.h"

#include <stdio.h>
#include <stdlib.h>

#include "train/dist.h"
#include "util/util.h"

typedef struct {
    size_t lo, hi;
} Range;

struct GradOverlap {
    GPT *model;
    int n_backward, device;
    size_t bucket_elems, shard_n;
    int backwards; /* finished in this step */
    int started;   /* buckets started in this step */
    int last_buckets;
    Range *wait;   /* finished ranges not yet started */
    int n_wait, cap_wait;
    size_t wait_elems;
};

static void flush(GradOverlap *g) {
    if (!g->n_wait) return;
    float *grads = gpt_grads(g->model);
    for (int k = 0; k < g->n_wait; k++) {
        const Range *r = &g->wait[k];
        if (g->device) dist_allreduce_bucket_async(grads + r->lo, r->hi - r->lo, DIST_F32, DIST_SUM);
        else dist_reduce_start_f32(grads, r->lo, r->hi, g->shard_n);
    }
    g->started++;
    g->n_wait = 0;
    g->wait_elems = 0;
}

static void add_range(GradOverlap *g, size_t lo, size_t hi) {
    g->wait_elems += hi - lo;
    for (int k = 0; k < g->n_wait; k++) { /* touching ranges become one collective */
        Range *r = &g->wait[k];
        if (r->lo == hi) { r->lo = lo; return; }
        if (r->hi == lo) { r->hi = hi; return; }
    }
    if (g->n_wait == g->cap_wait) {
        g->cap_wait = g->cap_wait ? 2 * g->cap_wait : 8;
        g->wait = xrealloc(g->wait, (size_t)g->cap_wait * sizeof(Range));
    }
    g->wait[g->n_wait++] = (Range){lo, hi};
}

static void grads_done(void *ctx, GPT *m, int unit) {
    GradOverlap *g = ctx;
    int global = unit == gpt_config(m)->n_layer;
    if (g->backwards == g->n_backward - 1) { /* the step's last backward */
        const GptGradRun *runs;
        int n = gpt_grad_unit_runs(m, unit, &runs);
        for (int k = 0; k < n; k++) add_range(g, runs[k].lo, runs[k].hi);
        if (global || g->wait_elems >= g->bucket_elems) flush(g);
        if (!g->device) dist_reduce_progress();
    } else if (g->started) {
        fprintf(stderr, "retort: rank %d: a backward pass ran after the step's gradient "
                "reduction had started (dist.overlap expects %d backwards per step, one per "
                "micro-step): a bug in the objective; set dist.overlap=false to run without "
                "it\n", dist_rank(), g->n_backward);
        dist_abort(1);
    }
    if (global) g->backwards++;
}

GradOverlap *grad_overlap_create(GPT *m, int n_backward, size_t bucket_bytes, size_t shard_n,
                                 int device) {
    GradOverlap *g = xcalloc(1, sizeof *g);
    g->model = m;
    g->n_backward = n_backward > 0 ? n_backward : 1;
    g->bucket_elems = bucket_bytes / sizeof(float);
    g->shard_n = device ? 0 : shard_n;
    g->device = device;
    gpt_set_grads_done(m, grads_done, g);
    return g;
}

void grad_overlap_begin_step(GradOverlap *g) {
    g->backwards = 0;
    g->started = 0;
    g->n_wait = 0;
    g->wait_elems = 0;
}

int grad_overlap_finish(GradOverlap *g) {
    g->last_buckets = g->started;
    if (g->backwards != g->n_backward) {
        if (g->started) { /* grads_done aborts first; kept as the invariant */
            fprintf(stderr, "retort: rank %d: dist.overlap: %d backwards in a step, %d expected\n",
                    dist_rank(), g->backwards, g->n_backward);
            dist_abort(1);
        }
        return -1;
    }
    if (g->device) dist_wait();
    else dist_reduce_wait();
    return 0;
}

int grad_overlap_buckets(const GradOverlap *g) { return g->last_buckets; }

void grad_overlap_free(GradOverlap *g) {
    if (!g) return;
    gpt_set_grads_done(g->model, NULL, NULL);
    free(g->wait);
    free(g);
}
