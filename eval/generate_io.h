/* eval/generate_io.h — generation over a JSONL file of prompts.
 *
 * Each input line is a JSON object whose prompt_field holds the prompt text.
 * Per prompt, `samples` completions are sampled (decoded together as the rows
 * of one batch, each row with its own generator seeded from (seed, line,
 * sample), so results do not depend on batching), or beam search returns its
 * `samples`-best. Stop strings end a completion where one first appears: the
 * text is cut before it, and the tokens are cut to those that decode to a
 * prefix of the cut text.
 *
 * Candidate pools (LMCOR: a greedy output plus N samples per prompt):
 * candidates = N > 0 makes completion 0 the greedy one (temperature 0, the
 * other options unchanged) and 1..N the samples drawn at the job's sampling
 * options, exactly the completions `samples = N` would draw (the same
 * per-sample generators), so pools and plain sampling agree.
 *
 * Output by extension:
 *   .jsonl  each line repeats the input object and adds "completions" and
 *           "logps" (and for beam search "scores"; with candidates "greedy":
 *           0, the index of the greedy completion; with write_ids
 *           "completion_ids", one array of token ids per completion (the
 *           tokens of its text: stop strings cut, EOS / end-of-turn not
 *           included), and "prompt_ids", the tokens the model was given
 *           (after --chat wrapping and prompt truncation; an empty prompt is
 *           [EOS])).
 *   .h5     a `kd` dataset (data/h5data.h): examples are prompt + chosen
 *           completion + EOS with the loss on the completion and its EOS;
 *           every kept completion of the prompt goes to candidates/; with
 *           store_topk, the teacher's top-K next-token log-probs at every
 *           position of each example. `select` picks the targets: the best
 *           (first) completion (sequence-level KD), every completion
 *           (multi-candidate), or the one with the highest sentence BLEU
 *           against the gold reference (seq-inter). add_gold also keeps the
 *           gold reference as an example. Filters drop empty completions,
 *           unfinished ones (no EOS or stop string before max_new_tokens), and
 *           copies of the prompt.
 * The output is written to OUT.tmp and renamed when complete.
 *
 * Prompt and context: a prompt of P tokens (an empty one is EOS) and
 * max_new_tokens N must fit the model's n_positions C: P + N <= C. When they
 * do not, the line is refused (file:line, P, N and C named) unless the job
 * says otherwise: truncate_prompt cuts the prompt to C - N tokens (at least
 * one), keeping its end (left) or its start (right); clamp_new_tokens makes N
 * an upper bound that the context lowers to C - P (a completion also ends
 * when the context is full, and counts as unfinished). N >= C never fits and
 * is refused unless clamp_new_tokens. */
#ifndef RETORT_GENERATE_IO_H
#define RETORT_GENERATE_IO_H

#include "data/chat_data.h"
#include "data/tokenizer.h"
#include "model/generate.h"

typedef enum { SELECT_BEST = 0, SELECT_ALL, SELECT_BLEU } TargetSelect;

/* -1 (error set) for a name other than best, all, bleu. */
int target_select_from_name(const char *name, TargetSelect *out);

#define GENERATE_MAX_STOPS 16

typedef enum { TRUNCATE_NONE = 0, TRUNCATE_LEFT, TRUNCATE_RIGHT } TruncatePrompt;

/* -1 (error set) for a name other than left, right. */
int truncate_prompt_from_name(const char *name, TruncatePrompt *out);

typedef struct {
    const char *input, *output;
    const char *prompt_field;  /* default "prompt" */
    SampleOptions sample;      /* sampling (beams == 0); stop is set internally */
    int samples;               /* completions per prompt (sampling), or n-best (beam) */
    int beams;                 /* 0 = sample, at most GENERATE_MAX_BEAMS */
    int candidates;            /* > 0: greedy + this many samples per prompt (above);
                                  samples must be 1 and beams 0 */
    int write_ids;             /* .jsonl: completion_ids and prompt_ids (above) */
    int batch;                 /* sequences decoded at once (cache slots); 0 = from memory */
    double length_penalty;
    TruncatePrompt truncate_prompt; /* a prompt that does not fit: refuse, or cut (above) */
    int clamp_new_tokens;      /* 1: the context may lower max_new_tokens (above) */
    uint64_t seed;
    int quiet;
    const char *stop[GENERATE_MAX_STOPS]; /* stop strings */
    int n_stop;
    /* .h5 (kd) output */
    TargetSelect select;
    const char *reference_field; /* gold target field (select bleu, add_gold) */
    int add_gold;
    int store_topk;            /* K teacher log-probs per token; 0 = none */
    int drop_empty, drop_unfinished, drop_copies;
    /* --chat (data/chat_data.h): each prompt text is wrapped as a user turn
     * by the model's template (add_generation_prompt), and a completion ends
     * at the template's end-of-turn token or at the tokenizer's EOS; the
     * caller sets sample.eos_id to chat->end_of_turn. kd examples end with the
     * end-of-turn token. NULL: prompts are plain text. */
    const ChatPrompt *chat;
} GenerateJob;

/* One completion of a prompt: its new tokens (stop strings cut; EOS and
 * end-of-turn not included), log-probability, score (beam search; else the
 * log-probability), whether it ended (EOS, end-of-turn or a stop string),
 * and its text (valid UTF-8). */
typedef struct {
    int *tokens;
    int len;
    double logp, score;
    int finished;
    char *text;
} Completion;

/* Many prompts decoded together (model/decode_batch.h: continuous batching;
 * every output equals the one the prompt gives alone). */
typedef struct {
    /* the next prompt in order: its text (kept valid until its emit or
     * drop), index (seeds its samples as a line number does), the caller's
     * pointer for it, and where it came from for errors (e.g. "file:3: the
     * prompt"); 1, 0 at the end of the input, -1 with the error set */
    int (*next)(void *ctx, const char **text, long *index, void **user, char *where,
                size_t where_size);
    /* a prompt's completions, in input order (the caller may take the
     * arrays, leaving NULL); nonzero stops the run with the error set */
    int (*emit)(void *ctx, void *user, const int *prompt, int n_prompt, Completion *c, int count);
    /* a prompt read but not emitted (the run stopped on an error) */
    void (*drop)(void *ctx, void *user);
    void *ctx;
} GenStream;

/* Decodes every prompt of s with the job's options over generate_slots()
 * cache slots. 0, or -1 with the error set (a prompt that does not fit, a
 * failed emit); prompts after an error are not decoded. */
int generate_stream(GPT *m, const Tokenizer *tok, const GenerateJob *job, GenStream *s);

/* Sequences decoded at once: job->batch, or as many as a quarter of the free
 * memory holds for sequences of the whole context, at most
 * GENERATE_AUTO_SLOTS. */
#define GENERATE_AUTO_SLOTS 64
int generate_slots(const GenerateJob *job, const GPT *m);

typedef struct {
    int64_t prompts, completions, examples, candidates;
    int64_t dropped_empty, dropped_unfinished, dropped_copies;
    int64_t prompts_without_example; /* every completion filtered out */
    int64_t new_tokens;
    double seconds;
} GenerateStats;

/* The job's options against the model: sampling and beam options, samples
 * >= 1 (and <= beams for beam search), max_new_tokens < n_positions unless
 * clamp_new_tokens. -1 with the error set. */
int generate_job_check(const GenerateJob *job, const GPTConfig *cfg);

/* The ids of a prompt text, appended to *ids from index 0: wrapped by
 * job->chat when set (the template writes its own specials); else the
 * tokenizer's special prefix (a Llama tokenizer's BOS: what transformers'
 * tokenizer(prompt) puts first, and what `data build --schema sft` puts before
 * a prompt, so a model generates from the ids it was trained on) and the text.
 * -1 with the error set when the template fails. */
int64_t generate_encode_prompt(const Tokenizer *tok, const GenerateJob *job, const char *text,
                               uint32_t **ids, int64_t *cap);

/* The model input for prompt ids[0:n] under the job's context policy (above):
 * writes it to prompt (room for C ints), its length to *n_prompt and the new
 * tokens that fit to *max_new. -1 with the error set, naming `where` (e.g.
 * "prompts.jsonl:3: the prompt"), when it does not fit. */
int generate_fit_prompt(const GenerateJob *job, int ctx, int eos_id, const uint32_t *ids,
                        int64_t n, const char *where, int *prompt, int *n_prompt, int *max_new);

/* How many completions a prompt gets: the n-best of beam search, 1 +
 * candidates, or samples. */
int generate_count(const GenerateJob *job);

/* The completions of one prompt as text (stop strings applied), for callers
 * that score them (retort eval): writes a new array of `got` new strings to
 * *texts and returns got. index seeds the per-sample generators as the line
 * number does in generate_jsonl. With job->candidates, texts[0] is the greedy
 * output and texts[1..candidates] the samples (LMCOR's pool). -1 with the
 * error set when the prompt does not fit the context (the caller adds where
 * the prompt is). */
int generate_texts(GPT *m, const Tokenizer *tok, const GenerateJob *job, const char *prompt_text,
                   long index, char ***texts);

/* The completions of prompts[0:n] as text, decoded together (generate_stream):
 * texts[i] gets a new array of counts[i] strings, those generate_texts gives
 * for prompts[i] with index[i]. 0, or -1 with the error set as generate_texts
 * sets it and *failed the position of the prompt that does not fit; then the
 * prompts before it have their texts and the others NULL. For callers that
 * read a file's prompts ahead (GENERATE_READ_AHEAD lines at a time), decode
 * them together, then use each line's texts in order. */
#define GENERATE_READ_AHEAD 512
int generate_texts_many(GPT *m, const Tokenizer *tok, const GenerateJob *job, int n,
                        const char *const *prompts, const long *index, char ***texts,
                        int *counts, int *failed);
void generated_strings_free(char **texts, int n);

/* One completion with its tokens, for callers that need more than the text. */
typedef struct {
    char *text;        /* stop strings cut, valid UTF-8 */
    int *ids;          /* the tokens of text (EOS / end-of-turn not included) */
    int n_ids;
    double logp;       /* summed log-probability of the new tokens (generate_sample_rows) */
    int finished;      /* ended by EOS, end-of-turn or a stop string */
} GeneratedText;

/* As generate_texts, with tokens and log-probabilities: a new array of got
 * entries in *out (free with generated_texts_free). */
int generate_completions(GPT *m, const Tokenizer *tok, const GenerateJob *job,
                         const char *prompt_text, long index, GeneratedText **out);
void generated_texts_free(GeneratedText *c, int n);

/* -1 with the error set (file:line for bad input lines). stats may be NULL. */
int generate_jsonl(GPT *m, const Tokenizer *tok, const GenerateJob *job, GenerateStats *stats);

#endif
