/* data/build.h — `retort data build`: text or JSONL in, an HDF5 dataset out.
 *
 * Input ending in .jsonl or .json is JSON Lines (one object per line): lm takes
 * the text field of each object as a document; sft takes prompt + completion as
 * an example, with loss_mask 0 on the prompt and 1 on the completion and its
 * EOS. Anything else (or "-" for standard input) is plain text, lm only, and
 * the whole input is one document. Every document ends with EOS. The input is
 * streamed line by line; the output goes through DatasetWriter (.tmp + rename).
 */
#ifndef RETORT_BUILD_H
#define RETORT_BUILD_H

#include <stdint.h>

#include "data/h5data.h"

typedef struct {
    const char *input;            /* path, or "-" for standard input */
    const char *output;           /* .h5 path */
    Schema schema;                /* lm or sft */
    const char *tokenizer;        /* "bytes" */
    const char *text_field;       /* lm JSONL field, "text" */
    const char *prompt_field;     /* sft JSONL fields, "prompt" ... */
    const char *completion_field; /* ... and "completion" */
    int skip_bad;                 /* skip (and count) malformed lines instead of failing */
    int quiet;                    /* no report on stdout */
} BuildOptions;

/* What a build did; the report prints it. */
typedef struct {
    int64_t lines;          /* input lines read */
    int64_t docs;           /* documents (lm) or examples (sft) written */
    int64_t tokens;         /* tokens written, EOS included */
    int64_t trained_tokens; /* sft: tokens with loss_mask 1 */
    int64_t skipped;        /* malformed lines skipped (skip_bad) */
} BuildStats;

/* 0, or -1 with the error set (naming file:line and field for bad input);
 * on failure no output file is left behind. */
int data_build(const BuildOptions *o);
/* The same, also filling *stats (may be NULL) on success. */
int data_build_stats(const BuildOptions *o, BuildStats *stats);

#endif
