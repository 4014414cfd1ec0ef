/* eval/generate.h — text generation from a GPT model.
 *
 * This first version recomputes the full forward pass for every new token
 * (no KV cache), which is exact and simple and fast enough for small models;
 * the KV-cache decoder replaces the inside of generate_sample later without
 * changing this interface. */
#ifndef RETORT_GENERATE_H
#define RETORT_GENERATE_H

#include <stdint.h>

#include "train/model.h"
#include "train/util.h"

typedef struct {
    int max_new_tokens;
    double temperature;   /* 0 = greedy */
    int top_k;            /* 0 = off */
    int eos_id;           /* stop when sampled; -1 = never */
} SampleOptions;

/* Appends up to max_new_tokens ids to tokens[0:n] (tokens must have room for
 * n + max_new_tokens). Returns the new length. */
int generate_sample(GPT *m, int *tokens, int n, const SampleOptions *o, Rng *rng);

/* Index of the token chosen from one row of logits (V) under o. */
int sample_from_logits(const float *logits, int V, const SampleOptions *o, Rng *rng);

#endif
