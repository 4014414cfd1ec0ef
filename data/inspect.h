/* data/inspect.h — `retort data inspect FILE.h5` and `retort data validate FILE.h5`.
 *
 * inspect prints what a dataset file holds: schema and root attributes,
 * document / example / pair counts, token counts, length statistics (min, mean,
 * max per item), for sft the share of trained tokens and the examples per role,
 * and the first n_examples items decoded with the given tokenizer ("bytes"
 * when NULL). In decoded sft examples the spans with loss_mask 1 are marked
 * [[like this]]; pref pairs print prompt, chosen and rejected.
 *
 * validate runs the readers' full checks (dataset_open for lm/sft,
 * pref_dataset_open for pref) and prints one line "ok: FILE: ..." on success.
 *
 * Both return 0, or -1 with the error set (err_msg(); nothing printed for it:
 * the caller prints the error the way every command does). */
#ifndef RETORT_INSPECT_H
#define RETORT_INSPECT_H

#include <stdio.h>

int data_inspect(const char *path, int n_examples, const char *tokenizer);
int data_validate(const char *path);
/* The same, printing to out instead of stdout. */
int data_inspect_to(FILE *out, const char *path, int n_examples, const char *tokenizer);
int data_validate_to(FILE *out, const char *path);

#endif
