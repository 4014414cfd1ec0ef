/* model/generate.h — text generation from a GPT model with a key/value cache:
 * the prompt is fed once (prefill), then one token per step, each step
 * attending to the cached keys and values (gpt_decode). Greedy, temperature,
 * top-k and top-p sampling. Generation stops at EOS, after max_new_tokens, or
 * when the model's context (n_positions) is full. */
#ifndef RETORT_GENERATE_H
#define RETORT_GENERATE_H

#include <stdint.h>

#include "model/model.h"
#include "util/util.h"

typedef struct {
    int max_new_tokens;
    double temperature;   /* 0 = greedy */
    int top_k;            /* 0 = off */
    double top_p;         /* nucleus: smallest set with probability >= top_p; 1 = off */
    int eos_id;           /* stop when sampled; -1 = never */
    /* Optional stop test after each new token (stop strings): returns nonzero
     * when new_tokens[0:n] (the completion so far) should end here. */
    int (*stop)(void *ctx, const int *new_tokens, int n);
    void *stop_ctx;
} SampleOptions;

/* Checks options that come from a user (the command line): max_new_tokens
 * >= 1, temperature finite and >= 0, top_k >= 0, top_p in (0, 1]. -1 with the
 * error naming the option (--temperature, ...) and the rule. */
int sample_options_check(const SampleOptions *o);

/* Beam search keeps beams x V candidate extensions and beams rows of
 * key/value cache (beams x n_layer x n_positions x n_embd x 2 values); the
 * usual widths are 4 to 10, and past 64 the memory grows with no gain in
 * quality, so wider searches are refused. */
#define GENERATE_MAX_BEAMS 64
/* beams in [0, GENERATE_MAX_BEAMS] (0 = sampling), length_penalty finite; -1
 * with the error set. */
int beam_options_check(int beams, double length_penalty);

/* Appends up to max_new_tokens ids to tokens[0:n] (tokens must have room for
 * n + max_new_tokens; 1 <= n <= n_positions). Returns the new length. */
int generate_sample(GPT *m, int *tokens, int n, const SampleOptions *o, Rng *rng);

/* `rows` completions of one prompt decoded together as the rows of one batch
 * (the prompt is prefilled into every row). Row r samples with its own
 * generator rngs[r], so a batch gives exactly the completions that rows
 * separate generate_sample calls with the same generators give. Writes row r's
 * new tokens to out + r*max_new_tokens and their count to lens[r]; rows that
 * reached EOS or their stop test stop growing while the others go on.
 * logps (rows, may be NULL) gets each row's summed log-probability of its new
 * tokens under the model itself (temperature 1, no top-k/top-p). */
void generate_sample_rows(GPT *m, const int *prompt, int n, int rows, const SampleOptions *o,
                          Rng *rngs, int *out, int *lens, double *logps);

/* One finished beam-search hypothesis. */
typedef struct {
    int *tokens;      /* the new tokens (not the prompt), len of them */
    int len;
    double logp;      /* sum of the log-probabilities of the new tokens */
    double score;     /* logp / L^length_penalty, L = len + 1 when the hypothesis
                         ended with EOS (the EOS counts, as in transformers), else len */
} Hypothesis;

/* Beam search with `beams` beams from prompt[0:n]: at each step the 2*beams
 * best (beam, token) extensions by cumulative log-probability are taken in
 * order; one ending in eos_id (when >= 0) becomes a finished hypothesis, the
 * others continue, until `beams` continue. Stops after max_new_tokens (or at
 * the context end), or once no running beam can beat the worst of `beams`
 * finished ones. Writes the n_best best hypotheses by score, best first, into
 * out (tokens allocated; free with hypotheses_free) and returns how many. */
int generate_beam(GPT *m, const int *prompt, int n, int beams, int max_new_tokens,
                  double length_penalty, int eos_id, int n_best, Hypothesis *out);
void hypotheses_free(Hypothesis *h, int count);

/* Index of the token chosen from one row of logits (V) under o: greedy
 * (temperature 0: the first maximum), or p_j = exp((l_j - max) / T) with the
 * candidates in order of p (ties: lower id first), cut to the first top_k and
 * then to the shortest prefix whose mass reaches top_p of the total, and the
 * first candidate whose running sum passes u x (the kept mass; the total,
 * summed in id order, when nothing is cut), u = one draw of rng in [0, 1).
 * The order is sorted only as far as the cut and the draw reach. Safe to
 * call from several threads at once (each with its own rng). */
int sample_from_logits(const float *logits, int V, const SampleOptions *o, Rng *rng);

#endif
