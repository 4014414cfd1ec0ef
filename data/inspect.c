/* data/inspect.c — `retort data inspect` and `retort data validate` (see
 * inspect.h). Everything is read through the validating readers, so inspect
 * never shows a file that validate would refuse. */
#include "data/inspect.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/h5data.h"
#include "data/tokenizer.h"
#include "util/util.h"

#define SHOW_MAX_BYTES 2000 /* decoded text shown per item before "..." */

/* Lengths of n items from their offsets: min, mean, max. */
static void print_lengths(FILE *out, const char *what, const int64_t *offsets, int64_t n) {
    int64_t lo = INT64_MAX, hi = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t len = offsets[i + 1] - offsets[i];
        if (len < lo) lo = len;
        if (len > hi) hi = len;
    }
    double mean = n ? (double)offsets[n] / (double)n : 0.0;
    fprintf(out, "  %s length: min %lld, mean %.1f, max %lld tokens\n", what,
            (long long)(n ? lo : 0), mean, (long long)hi);
}

/* Appends text to a bounded buffer; returns 0 once it is full. */
typedef struct {
    char buf[SHOW_MAX_BYTES + 1];
    size_t len;
    int full;
} Shown;

static void shown_add(Shown *s, const char *text, size_t n) {
    if (s->full) return;
    if (s->len + n > SHOW_MAX_BYTES) {
        n = SHOW_MAX_BYTES - s->len;
        s->full = 1;
    }
    memcpy(s->buf + s->len, text, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

/* Decodes tokens[0:n]; with mask, spans of 1 are wrapped in [[ ]]. */
static void print_decoded(FILE *out, const Tokenizer *tok, const uint32_t *tokens,
                          const uint8_t *mask, int64_t n) {
    Shown s = {.len = 0};
    char piece[300];
    int in_span = 0;
    for (int64_t i = 0; i < n && !s.full; i++) {
        int m = mask ? mask[i] : 0;
        if (m && !in_span) shown_add(&s, "[[", 2);
        if (!m && in_span) shown_add(&s, "]]", 2);
        in_span = m;
        int k;
        if (tokens[i] < (uint32_t)tok->vocab_size) {
            k = tok->decode_token(tok, tokens[i], piece);
        } else {
            k = snprintf(piece, sizeof piece, "<id %u>", tokens[i]);
        }
        shown_add(&s, piece, (size_t)k);
    }
    if (in_span && !s.full) shown_add(&s, "]]", 2);
    fprintf(out, "    %s%s\n", s.buf, s.full ? " ..." : "");
}

static void print_header(FILE *out, const char *path, Schema schema, int version, int vocab,
                         int eos, int pad, const char *tokenizer) {
    fprintf(out, "%s: schema %s, version %d, vocab_size %d (eos %d, pad %d), tokenizer %s\n",
            path, schema_name(schema), version, vocab, eos, pad, tokenizer);
}

static Tokenizer *load_decoder(FILE *out, const char *spec, const char *file_tok, int vocab) {
    Tokenizer *tok = tokenizer_load(spec ? spec : "bytes");
    if (!tok) return NULL;
    if (strcmp(tok->name, file_tok) != 0 || tok->vocab_size != vocab)
        fprintf(out, "  note: decoding with tokenizer %s (vocab %d); the file was built with %s "
                     "(vocab %d)\n",
                tok->name, tok->vocab_size, file_tok, vocab);
    return tok;
}

/* "  roles: planner=12 caller=30" for a role or task column. */
static void print_tag_counts(FILE *out, const char *what, const uint8_t *col, int64_t n,
                             char **names, int n_names) {
    if (!col) return;
    int64_t count[256] = {0};
    for (int64_t i = 0; i < n; i++) count[col[i]]++;
    fprintf(out, "  %s:", what);
    for (int r = 0; r < 256; r++) {
        if (r < n_names) fprintf(out, " %s=%lld", names[r], (long long)count[r]);
        else if (count[r]) fprintf(out, " #%d=%lld", r, (long long)count[r]);
    }
    fprintf(out, "\n");
}

static int inspect_lm_sft(FILE *out, const char *path, int n_show, const char *spec) {
    Dataset ds;
    if (dataset_open(&ds, path) != 0) return -1;
    int sft = ds.schema != SCHEMA_LM;
    print_header(out, path, ds.schema, ds.version, ds.vocab_size, ds.eos_id, ds.pad_id,
                 ds.tokenizer);
    fprintf(out, "  %lld %s, %lld tokens\n", (long long)ds.n_docs, sft ? "examples" : "documents",
            (long long)ds.n_tokens);
    print_lengths(out, sft ? "example" : "document", ds.offsets, ds.n_docs);
    if (sft) {
        int64_t trained = 0;
        for (int64_t i = 0; i < ds.n_tokens; i++) trained += ds.loss_mask[i];
        fprintf(out, "  %lld tokens carry loss (%.1f%%)\n", (long long)trained,
                100.0 * (double)trained / (double)ds.n_tokens);
        print_tag_counts(out, "roles", ds.role, ds.n_docs, ds.role_names, ds.n_roles);
        print_tag_counts(out, "tasks", ds.task, ds.n_docs, ds.task_names, ds.n_tasks);
        if (ds.topk > 0)
            fprintf(out, "  teacher top-%d log-probs per token (offline word-level KD)\n", ds.topk);
        if (ds.n_cand > 0)
            fprintf(out, "  %lld candidates (%lld tokens) for %lld examples\n",
                    (long long)ds.n_cand, (long long)ds.n_cand_tokens,
                    (long long)(ds.cand_example[ds.n_cand - 1] + 1));
    }
    int rc = 0;
    if (n_show > 0) {
        Tokenizer *tok = load_decoder(out, spec, ds.tokenizer, ds.vocab_size);
        if (!tok) rc = -1;
        for (int64_t i = 0; tok && i < ds.n_docs && i < n_show; i++) {
            int64_t a = ds.offsets[i], n = ds.offsets[i + 1] - a;
            fprintf(out, "%s %lld (%lld tokens", sft ? "example" : "document", (long long)i,
                    (long long)n);
            if (ds.role && ds.role[i] < ds.n_roles)
                fprintf(out, ", role %s", ds.role_names[ds.role[i]]);
            if (ds.task && ds.task[i] < ds.n_tasks)
                fprintf(out, ", task %s", ds.task_names[ds.task[i]]);
            fprintf(out, ")%s:\n", sft ? "; [[trained]]" : "");
            print_decoded(out, tok, ds.tokens + a, sft ? ds.loss_mask + a : NULL, n);
        }
        tokenizer_free(tok);
    }
    dataset_close(&ds);
    return rc;
}

static int inspect_pref(FILE *out, const char *path, int n_show, const char *spec) {
    PrefDataset pd;
    if (pref_dataset_open(&pd, path) != 0) return -1;
    print_header(out, path, SCHEMA_PREF, pd.version, pd.vocab_size, pd.eos_id, pd.pad_id,
                 pd.tokenizer);
    const PrefPart *part[3] = {&pd.prompt, &pd.chosen, &pd.rejected};
    static const char *const names[3] = {"prompt", "chosen", "rejected"};
    fprintf(out, "  %lld pairs, %lld tokens (prompt %lld, chosen %lld, rejected %lld)\n",
            (long long)pd.n_pairs,
            (long long)(pd.prompt.n_tokens + pd.chosen.n_tokens + pd.rejected.n_tokens),
            (long long)pd.prompt.n_tokens, (long long)pd.chosen.n_tokens,
            (long long)pd.rejected.n_tokens);
    fprintf(out, "  prompt/response boundary: %s\n", pd.boundary);
    for (int k = 0; k < 3; k++) print_lengths(out, names[k], part[k]->offsets, pd.n_pairs);
    if (pd.ref_logp_chosen || pd.ref_logp_rejected)
        fprintf(out, "  reference log-probabilities:%s%s\n",
                pd.ref_logp_chosen ? " ref_logp_chosen" : "",
                pd.ref_logp_rejected ? " ref_logp_rejected" : "");
    int rc = 0;
    if (n_show > 0) {
        Tokenizer *tok = load_decoder(out, spec, pd.tokenizer, pd.vocab_size);
        if (!tok) rc = -1;
        for (int64_t i = 0; tok && i < pd.n_pairs && i < n_show; i++) {
            fprintf(out, "pair %lld:\n", (long long)i);
            for (int k = 0; k < 3; k++) {
                int64_t a = part[k]->offsets[i], n = part[k]->offsets[i + 1] - a;
                fprintf(out, "  %s (%lld tokens):\n", names[k], (long long)n);
                print_decoded(out, tok, part[k]->tokens + a, NULL, n);
            }
        }
        tokenizer_free(tok);
    }
    pref_dataset_close(&pd);
    return rc;
}

int data_inspect_to(FILE *out, const char *path, int n_examples, const char *tokenizer) {
    Schema schema;
    if (dataset_peek_schema(path, &schema) != 0) return -1;
    if (schema == SCHEMA_PREF) return inspect_pref(out, path, n_examples, tokenizer);
    return inspect_lm_sft(out, path, n_examples, tokenizer);
}

int data_inspect(const char *path, int n_examples, const char *tokenizer) {
    int rc = data_inspect_to(stdout, path, n_examples, tokenizer);
    fflush(stdout);
    return rc;
}

int data_validate_to(FILE *out, const char *path) {
    Schema schema;
    if (dataset_peek_schema(path, &schema) != 0) return -1;
    if (schema == SCHEMA_PREF) {
        PrefDataset pd;
        if (pref_dataset_open(&pd, path) != 0) return -1;
        fprintf(out, "ok: %s: schema pref, %lld pairs, %lld tokens, vocab_size %d, tokenizer %s\n",
                path, (long long)pd.n_pairs,
                (long long)(pd.prompt.n_tokens + pd.chosen.n_tokens + pd.rejected.n_tokens),
                pd.vocab_size, pd.tokenizer);
        pref_dataset_close(&pd);
        return 0;
    }
    Dataset ds;
    if (dataset_open(&ds, path) != 0) return -1;
    fprintf(out, "ok: %s: schema %s, %lld %s, %lld tokens, vocab_size %d, tokenizer %s\n", path,
            schema_name(ds.schema), (long long)ds.n_docs,
            ds.schema != SCHEMA_LM ? "examples" : "documents", (long long)ds.n_tokens,
            ds.vocab_size, ds.tokenizer);
    dataset_close(&ds);
    return 0;
}

int data_validate(const char *path) {
    int rc = data_validate_to(stdout, path);
    fflush(stdout);
    return rc;
}
