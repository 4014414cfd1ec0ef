/* eval/data_nll.h — a model's negative log-likelihood on an HDF5 split
 * (`retort eval --data`), without training.
 *
 * Scored tokens: a sequence — the whole token stream of an lm file (its
 * documents back to back, as training reads them), or each example of an sft
 * or kd file — is cut into windows of T+1 tokens starting at multiples of T,
 * the last one shorter; within a window, token j+1 is predicted from tokens
 * 0..j, so every token but a sequence's first is scored exactly once with at
 * most T tokens of context (for a sequence of at most T+1 tokens, the whole
 * sequence). An sft/kd token counts only where its loss_mask is 1 (kd
 * teacher data is not used: this is the student's own NLL). Windows are
 * scored `batch` at a time, right-padded.
 *
 *   nll  = sum over scored tokens of -log p(token | window before it) / tokens
 *   ppl  = exp(nll)
 *
 * tests/make_eval_data_fixtures.py computes the same with transformers. */
#ifndef RETORT_DATA_NLL_H
#define RETORT_DATA_NLL_H

#include <stdint.h>

#include "data/h5data.h"
#include "model/model.h"

typedef struct {
    const char *path;
    int T;                       /* window: T+1 tokens; 0 = the model's context */
    int batch;                   /* windows per forward; 0 = 8 */
    const char *model_tokenizer; /* the model's tokenizer identity, checked against the
                                    file's (NULL or "": not checked) */
    int quiet;                   /* no progress line */
} DataNllJob;

typedef struct {
    Schema schema;
    int T;
    int64_t sequences, windows, tokens;
    double nll_sum, nll, ppl;
    double seconds;
} DataNllResult;

/* -1 with the error set: a file that does not open or validate, a pref file,
 * a tokenizer or vocabulary the model does not share, T past the context, a
 * split without a scored token. */
int data_nll(GPT *m, const DataNllJob *job, DataNllResult *out);

/* The result as one JSON object to path (atomically). */
int data_nll_write_json(const DataNllResult *r, const char *path);

#endif
