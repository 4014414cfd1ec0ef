/* eval/generate_io.h — generation over a JSONL file of prompts.
 *
 * Each input line is a JSON object whose prompt_field holds the prompt text;
 * each output line repeats the input object and adds "completions" (the
 * samples, or the n-best of beam search) and, for beam search, "scores" and
 * "logps". The output is written to OUT.tmp and renamed when complete. */
#ifndef RETORT_GENERATE_IO_H
#define RETORT_GENERATE_IO_H

#include "data/tokenizer.h"
#include "eval/generate.h"

typedef struct {
    const char *input, *output;
    const char *prompt_field;  /* default "prompt" */
    SampleOptions sample;      /* sampling (beams == 0) */
    int samples;               /* completions per prompt (sampling), or n-best (beam) */
    int beams;                 /* 0 = sample */
    double length_penalty;
    uint64_t seed;
    int quiet;
} GenerateJob;

/* -1 with the error set (file:line for bad input lines). */
int generate_jsonl(GPT *m, const Tokenizer *tok, const GenerateJob *job);

#endif
