/* eval/generate.h — text generation from a GPT model with a key/value cache:
 * the prompt is fed once (prefill), then one token per step, each step
 * attending to the cached keys and values (gpt_decode). Greedy, temperature,
 * top-k and top-p sampling. Generation stops at EOS, after max_new_tokens, or
 * when the model's context (n_positions) is full. */
#ifndef RETORT_GENERATE_H
#define RETORT_GENERATE_H

#include <stdint.h>

#include "train/model.h"
#include "train/util.h"

typedef struct {
    int max_new_tokens;
    double temperature;   /* 0 = greedy */
    int top_k;            /* 0 = off */
    double top_p;         /* nucleus: smallest set with probability >= top_p; 1 = off */
    int eos_id;           /* stop when sampled; -1 = never */
} SampleOptions;

/* Appends up to max_new_tokens ids to tokens[0:n] (tokens must have room for
 * n + max_new_tokens; 1 <= n <= n_positions). Returns the new length. */
int generate_sample(GPT *m, int *tokens, int n, const SampleOptions *o, Rng *rng);

/* Index of the token chosen from one row of logits (V) under o. */
int sample_from_logits(const float *logits, int V, const SampleOptions *o, Rng *rng);

#endif
