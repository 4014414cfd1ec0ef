/* model/decode_batch.h — continuous batching: many generation requests
 * decoded together over one key/value cache of slots.
 *
 * A request is one prompt and what to make of it: `rows` sampled
 * completions (each row with its own generator) or a beam search of `beams`
 * beams. It holds rows (or 2 x beams: the beams' caches are double
 * buffered) slots while it runs. Each step is one model call
 * (gpt_decode_slots) that feeds every running row its last token and
 * prefills the prompts of the requests admitted at that step (a prompt is
 * prefilled once, into its first slot, and copied to the request's other
 * slots); a finished request gives its slots back at once and the next
 * request from the source takes them, so the batch stays full over a long
 * input. The source is pulled in order; requests finish in any order
 * (`done` is called as each finishes; the caller restores its order).
 *
 * The decoding GEMMs are row-invariant (kernels/ops.h, matmul_rows_forward)
 * and attention is per token, so on the CPU a request's logits are the same
 * bits whatever else is in the batch and however many slots there are:
 * every output (tokens, log-probabilities, beam scores) equals the one the
 * request gives decoded alone — generate_sample, generate_sample_rows and
 * generate_beam are this engine with a single request. */
#ifndef RETORT_DECODE_BATCH_H
#define RETORT_DECODE_BATCH_H

#include "model/generate.h"

typedef struct DecodeRequest {
    /* in */
    const int *prompt;   /* n tokens, 1 <= n < n_positions */
    int n;
    int rows;            /* sampled completions (beams == 0), >= 1 */
    int beams;           /* > 0: beam search (rows ignored) */
    SampleOptions opts;  /* max_new_tokens (lowered to the context), temperature, top-k,
                            top-p, eos_id, stop (called with row r's tokens) */
    Rng *rngs;           /* rows generators (sampling) */
    double length_penalty;
    int n_best;          /* beam: hypotheses wanted (<= beams) */
    /* out, sampling: row r's new tokens at out + r * opts.max_new_tokens (the
     * caller's array, rows x max_new_tokens), their count lens[r], and their
     * summed log-probability under the model at temperature 1 (logps, may be
     * NULL) */
    int *out, *lens;
    double *logps;
    /* out, beam search: the n_best best hypotheses, best first (tokens
     * allocated; hypotheses_free), and how many */
    Hypothesis *hyp;
    int n_hyp;
    void *user;          /* the caller's */
} DecodeRequest;

typedef struct {
    /* the next request in order, or NULL when there are no more */
    DecodeRequest *(*next)(void *ctx);
    /* r has finished (its outputs are written) */
    void (*done)(void *ctx, DecodeRequest *r);
    void *ctx;
    /* after each step: new tokens made in that step (may be NULL) */
    void (*progress)(void *ctx, int new_tokens);
} DecodeSource;

/* Slots that `bytes` of memory hold for sequences of up to `len` positions:
 * the key/value cache and the decoding activations of a slot, at least 1. */
int decode_slots_for_memory(const GPT *m, int len, size_t bytes);

/* Runs every request of src to completion over `slots` cache slots (a
 * request needs rows, or 2 x beams, slots; one that needs more than `slots`
 * runs with the slots it needs, alone). */
void decode_batch(GPT *m, int slots, DecodeSource *src);

/* decode_batch over the n requests of an array, in order. */
void decode_batch_list(GPT *m, int slots, DecodeRequest *reqs, int n);

#endif
