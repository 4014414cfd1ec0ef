/* eval/data_nll.c — NLL and perplexity of a model on an HDF5 split (see
 * data_nll.h). Windows are gathered `batch` at a time and packed to the
 * longest of them before the forward, so short sft examples do not pay for
 * the whole context. */
#include "eval/data_nll.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/tokenizer.h"
#include "util/util.h"
#include "util/progress.h"

typedef struct {
    GPT *m;
    int T, B, rows, width;   /* rows gathered so far, the widest of them */
    int *in, *tg;            /* (B, T) rows at stride T */
    int *pin, *ptg;          /* (B, width) packed for the forward */
    float *lp;               /* (B, T) */
    double sum;
    int64_t count;
} Batch;

static void flush(Batch *b) {
    if (b->rows == 0) return;
    int W = b->width;
    for (int r = 0; r < b->rows; r++) {
        memcpy(b->pin + (size_t)r * W, b->in + (size_t)r * b->T, (size_t)W * sizeof(int));
        memcpy(b->ptg + (size_t)r * W, b->tg + (size_t)r * b->T, (size_t)W * sizeof(int));
    }
    gpt_forward(b->m, b->pin, b->ptg, b->rows, W, b->lp);
    for (size_t i = 0; i < (size_t)b->rows * W; i++)
        if (b->ptg[i] >= 0) {
            b->sum -= b->lp[i];
            b->count++;
        }
    b->rows = 0;
    b->width = 0;
}

/* One window: tokens[a .. a+w] (w+1 tokens), mask over the same tokens or
 * NULL. 0 when it has no scored target (and was not added). */
static int add_window(Batch *b, const uint32_t *tokens, const uint8_t *mask, int w, int eos) {
    int *in = b->in + (size_t)b->rows * b->T, *tg = b->tg + (size_t)b->rows * b->T;
    int scored = 0;
    for (int j = 0; j < b->T; j++) {
        if (j < w) {
            in[j] = (int)tokens[j];
            tg[j] = !mask || mask[j + 1] ? (int)tokens[j + 1] : -1;
            scored += tg[j] >= 0;
        } else {
            in[j] = eos;
            tg[j] = -1;
        }
    }
    if (!scored) return 0;
    if (w > b->width) b->width = w;
    if (++b->rows == b->B) flush(b);
    return 1;
}

int data_nll(GPT *m, const DataNllJob *job, DataNllResult *out) {
    memset(out, 0, sizeof *out);
    Schema schema;
    if (dataset_peek_schema(job->path, &schema) != 0) return -1;
    if (schema == SCHEMA_PREF)
        return err_set("%s is a pref dataset (preference pairs); eval --data scores lm, sft and kd "
                       "splits (`retort dpo precompute-ref` gives pairs' log-probabilities)",
                       job->path);
    Dataset ds;
    if (dataset_open(&ds, job->path) != 0) return -1;
    const GPTConfig *cfg = gpt_config(m);
    int ctx = gpt_context_len(cfg), rc = 0;
    int T = job->T > 0 ? job->T : ctx, B = job->batch > 0 ? job->batch : 8;
    if (T > ctx)
        rc = err_set("--seq-len %d exceeds the model's context of %d positions; give at most %d",
                     T, ctx, ctx);
    else if (ds.vocab_size > cfg->vocab_size)
        rc = err_set("%s: dataset vocab_size %d exceeds the model's %d; its token ids would be out "
                     "of range: build the data with the model's tokenizer",
                     job->path, ds.vocab_size, cfg->vocab_size);
    else if (job->model_tokenizer && job->model_tokenizer[0] &&
             tokenizer_same(ds.tokenizer, job->model_tokenizer) == 0)
        rc = err_set("%s was built with tokenizer %s, but the model uses %s; build the data with "
                     "the model's tokenizer (retort data build --tokenizer)",
                     job->path, ds.tokenizer, job->model_tokenizer);
    if (rc != 0) {
        dataset_close(&ds);
        return -1;
    }
    double t0 = now_seconds();
    Batch b = {.m = m, .T = T, .B = B};
    Progress *prog = progress_open("eval", "tokens", ds.n_tokens, job->quiet);
    b.in = xmalloc((size_t)B * T * sizeof(int));
    b.tg = xmalloc((size_t)B * T * sizeof(int));
    b.pin = xmalloc((size_t)B * T * sizeof(int));
    b.ptg = xmalloc((size_t)B * T * sizeof(int));
    b.lp = xmalloc((size_t)B * T * sizeof(float));
    int lm = ds.schema == SCHEMA_LM;
    int64_t n_seq = lm ? 1 : ds.n_docs;
    for (int64_t i = 0; i < n_seq; i++) {
        int64_t first = lm ? 0 : ds.offsets[i], len = lm ? ds.n_tokens : ds.offsets[i + 1] - first;
        const uint8_t *mask = lm ? NULL : ds.loss_mask;
        for (int64_t s = 0; s + 1 < len; s += T) {
            int w = len - 1 - s < T ? (int)(len - 1 - s) : T;
            out->windows += add_window(&b, ds.tokens + first + s, mask ? mask + first + s : NULL,
                                       w, ds.eos_id);
            progress_add(prog, w + (s == 0)); /* a sequence's first token is context only */
        }
    }
    flush(&b);
    progress_close(prog, 1);
    out->schema = ds.schema;
    out->T = T;
    out->sequences = n_seq;
    out->tokens = b.count;
    out->nll_sum = b.sum;
    out->nll = b.count ? b.sum / (double)b.count : NAN;
    out->ppl = exp(out->nll);
    out->seconds = now_seconds() - t0;
    if (b.count == 0)
        rc = err_set("%s: no token to score (%lld sequences%s)", job->path, (long long)n_seq,
                     lm ? "" : ", every loss_mask is 0 past each sequence's first token");
    free(b.in);
    free(b.tg);
    free(b.pin);
    free(b.ptg);
    free(b.lp);
    dataset_close(&ds);
    return rc;
}

int data_nll_write_json(const DataNllResult *r, const char *path) {
    json_t *o = json_object();
    json_object_set_new(o, "schema", json_string(schema_name(r->schema)));
    json_object_set_new(o, "seq_len", json_integer(r->T));
    json_object_set_new(o, "sequences", json_integer(r->sequences));
    json_object_set_new(o, "windows", json_integer(r->windows));
    json_object_set_new(o, "tokens", json_integer(r->tokens));
    json_object_set_new(o, "nll", json_real(r->nll));
    json_object_set_new(o, "ppl", isfinite(r->ppl) ? json_real(r->ppl) : json_null());
    json_object_set_new(o, "seconds", json_real(r->seconds));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    size_t n = strlen(text);
    char *withnl = xmalloc(n + 2);
    memcpy(withnl, text, n);
    withnl[n] = '\n';
    int rc = write_file_atomic(path, withnl, n + 1);
    free(withnl);
    free(text);
    return rc;
}
