/* data/bpe_train.c — `retort tokenizer train`: learns a byte-level BPE from a
 * text file and writes it as a Hugging Face tokenizer.json.
 *
 * The corpus is read whole, "<|endoftext|>" is cut out, and the rest is split
 * with the encoder's own pre-tokenizer (bpe_regex_next), so training sees
 * exactly the pieces encoding will. Unique pieces ("words") are counted, and
 * each starts as its byte tokens. Ids: 0..255 are the byte tokens ordered by
 * the code point that spells them (as tokenizers' BpeTrainer orders its
 * alphabet), merges take 256, 257, ..., and "<|endoftext|>" takes the last id.
 *
 * The merge loop is the classic incremental one: pair counts weighted by word
 * counts, a max-heap of (count, pair) with lazy deletion — a popped entry whose
 * count is stale is pushed again with the current count — and, per pair, the
 * list of words that hold it, so a merge touches only those words. A word that
 * holds the pair has its pairs subtracted, is merged in place, and has its
 * pairs added back; only pairs with the new token can gain count, and they are
 * pushed once at the end of the step. Ties go to the smaller (left, right) ids,
 * which makes the result deterministic (and BpeTrainer's order when its
 * special token is id 0 and everything else is shifted by one).
 */
#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/bpe.h"
#include "util/util.h"

#define EOS_TEXT "<|endoftext|>"
#define MAX_TRAIN_VOCAB (1 << 24)

typedef struct {
    int64_t count;
    uint32_t off, len; /* symbols in Trainer.syms */
} Word;

typedef struct {
    uint32_t left, right;
    int64_t count;
    uint32_t *words; /* words that hold (or once held) the pair; may repeat */
    uint32_t n_words, cap_words;
    uint32_t stamp;  /* the last merge step that raised its count */
    int banned;      /* the merged token would exceed BPE_MAX_TOKEN_BYTES */
} Pair;

typedef struct {
    int64_t count;
    uint32_t left, right;
} HeapItem;

typedef struct {
    Word *words;
    size_t n_words;
    uint32_t *syms;
    /* pairs: open addressing from left << 32 | right to an index into pairs */
    uint64_t *keys;
    uint32_t *slots;
    size_t n_slots; /* power of two */
    Pair *pairs;
    size_t n_pairs, cap_pairs;
    HeapItem *heap;
    size_t n_heap, cap_heap;
    /* tokens: bytes of id i are tok_bytes[tok_off[i] : tok_off[i] + tok_len[i]] */
    char *tok_bytes;
    size_t tok_bytes_len, tok_bytes_cap;
    uint32_t *tok_off, *tok_len;
    size_t n_tokens;
    BpeMap tok_ids; /* token bytes -> id */
    uint32_t (*merges)[2];
    size_t n_merges, cap_merges;
    size_t *raised; /* pairs whose count the current step raised */
    size_t n_raised, cap_raised;
} Trainer;

/* ------------------------------------------------------------- pair map */

#define NO_SLOT UINT32_MAX

static size_t pair_hash(const Trainer *t, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 20) & (t->n_slots - 1);
}

static void pairs_rehash(Trainer *t, size_t n_slots) {
    free(t->keys);
    free(t->slots);
    t->n_slots = n_slots;
    t->keys = xmalloc(n_slots * sizeof *t->keys);
    t->slots = xmalloc(n_slots * sizeof *t->slots);
    for (size_t i = 0; i < n_slots; i++) t->slots[i] = NO_SLOT;
    for (size_t p = 0; p < t->n_pairs; p++) {
        uint64_t key = (uint64_t)t->pairs[p].left << 32 | t->pairs[p].right;
        size_t i = pair_hash(t, key);
        while (t->slots[i] != NO_SLOT) i = (i + 1) & (n_slots - 1);
        t->keys[i] = key;
        t->slots[i] = (uint32_t)p;
    }
}

/* The pair (left, right), created with count 0 when new. */
static Pair *pair_get(Trainer *t, uint32_t left, uint32_t right) {
    uint64_t key = (uint64_t)left << 32 | right;
    size_t i = pair_hash(t, key);
    while (t->slots[i] != NO_SLOT) {
        if (t->keys[i] == key) return &t->pairs[t->slots[i]];
        i = (i + 1) & (t->n_slots - 1);
    }
    if (t->n_pairs == t->cap_pairs) {
        t->cap_pairs = t->cap_pairs ? 2 * t->cap_pairs : 1024;
        t->pairs = xrealloc(t->pairs, t->cap_pairs * sizeof *t->pairs);
    }
    assert(t->n_pairs < NO_SLOT);
    Pair *p = &t->pairs[t->n_pairs];
    memset(p, 0, sizeof *p);
    p->left = left;
    p->right = right;
    p->stamp = UINT32_MAX;
    t->keys[i] = key;
    t->slots[i] = (uint32_t)t->n_pairs++;
    if (t->n_pairs * 2 > t->n_slots) {
        pairs_rehash(t, t->n_slots * 2);
        return &t->pairs[t->n_pairs - 1];
    }
    return p;
}

static void pair_note_word(Pair *p, uint32_t w) {
    if (p->n_words > 0 && p->words[p->n_words - 1] == w) return;
    if (p->n_words == p->cap_words) {
        p->cap_words = p->cap_words ? 2 * p->cap_words : 4;
        p->words = xrealloc(p->words, p->cap_words * sizeof *p->words);
    }
    p->words[p->n_words++] = w;
}

/* ------------------------------------------------------------------ heap */

/* a before b: higher count, then smaller (left, right) */
static int heap_before(const HeapItem *a, const HeapItem *b) {
    if (a->count != b->count) return a->count > b->count;
    if (a->left != b->left) return a->left < b->left;
    return a->right < b->right;
}

static void heap_push(Trainer *t, const Pair *p) {
    if (t->n_heap == t->cap_heap) {
        t->cap_heap = t->cap_heap ? 2 * t->cap_heap : 1024;
        t->heap = xrealloc(t->heap, t->cap_heap * sizeof *t->heap);
    }
    HeapItem item = {p->count, p->left, p->right};
    size_t i = t->n_heap++;
    while (i > 0 && heap_before(&item, &t->heap[(i - 1) / 2])) {
        t->heap[i] = t->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    t->heap[i] = item;
}

static HeapItem heap_pop(Trainer *t) {
    HeapItem top = t->heap[0], last = t->heap[--t->n_heap];
    size_t i = 0, n = t->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_before(&t->heap[c + 1], &t->heap[c])) c++;
        if (!heap_before(&t->heap[c], &last)) break;
        t->heap[i] = t->heap[c];
        i = c;
    }
    if (n > 0) t->heap[i] = last;
    return top;
}

/* ---------------------------------------------------------------- tokens */

/* The id of the token with these bytes, made when new. Two merges can make
 * the same bytes ("a" + "bc", "ab" + "c"); they share the id, as in BpeTrainer. */
static uint32_t token_id(Trainer *t, const char *bytes, size_t len) {
    int added;
    BpeMapSlot *s = bpe_map_put(&t->tok_ids, bytes, len, bpe_hash_bytes(bytes, len),
                                &added);
    if (!added) return s->v0;
    if (t->tok_bytes_len + len > t->tok_bytes_cap) {
        t->tok_bytes_cap = 2 * (t->tok_bytes_len + len) + 1024;
        t->tok_bytes = xrealloc(t->tok_bytes, t->tok_bytes_cap);
    }
    memcpy(t->tok_bytes + t->tok_bytes_len, bytes, len);
    size_t id = t->n_tokens++;
    t->tok_off[id] = (uint32_t)t->tok_bytes_len;
    t->tok_len[id] = (uint32_t)len;
    t->tok_bytes_len += len;
    s->v0 = (uint32_t)id;
    return (uint32_t)id;
}

static int cmp_byte_by_codepoint(const void *x, const void *y) {
    char a[2], b[2];
    int la = bpe_byte_to_utf8(*(const unsigned char *)x, a);
    int lb = bpe_byte_to_utf8(*(const unsigned char *)y, b);
    /* UTF-8 byte order is code point order */
    int c = memcmp(a, b, (size_t)(la < lb ? la : lb));
    return c ? c : la - lb;
}

/* ------------------------------------------------------------- counting */

static void count_piece(BpeMap *seen, Word **words, size_t *n, size_t *cap, const char *piece,
                        size_t len) {
    int added;
    BpeMapSlot *s = bpe_map_put(seen, piece, len, bpe_hash_bytes(piece, len), &added);
    if (added) {
        if (*n == *cap) {
            *cap = *cap ? 2 * *cap : 4096;
            *words = xrealloc(*words, *cap * sizeof **words);
        }
        s->v0 = (uint32_t)*n;
        (*words)[(*n)++] = (Word){0, 0, 0};
    }
    (*words)[s->v0].count++;
}

/* Splits text like the encoder does and counts the pieces; fills t->words
 * and t->syms (each word as byte tokens, via byte_id). */
static int count_words(Trainer *t, const char *text, size_t len, const uint32_t byte_id[256],
                       int64_t *n_pieces) {
    BpeRegex *re = bpe_regex_new();
    if (!re) return -1;
    BpeMap seen;
    bpe_map_init(&seen, 1 << 16);
    Word *words = NULL;
    size_t n = 0, cap = 0;
    size_t pos = 0;
    *n_pieces = 0;
    while (pos < len) {
        const char *eos = memmem(text + pos, len - pos, EOS_TEXT, strlen(EOS_TEXT));
        size_t span_end = eos ? (size_t)(eos - text) : len;
        while (pos < span_end) {
            size_t start, end;
            if (!bpe_regex_next(re, text, span_end, pos, &start, &end)) start = end = span_end;
            if (start > pos) count_piece(&seen, &words, &n, &cap, text + pos, start - pos);
            if (end > start) count_piece(&seen, &words, &n, &cap, text + start, end - start);
            *n_pieces += (start > pos) + (end > start);
            pos = end;
        }
        pos = eos ? span_end + strlen(EOS_TEXT) : len;
    }
    bpe_regex_free(re);
    t->syms = xmalloc((seen.keys_len ? seen.keys_len : 1) * sizeof *t->syms);
    for (size_t i = 0; i < seen.cap; i++) {
        const BpeMapSlot *s = &seen.slots[i];
        if (s->key_len == UINT32_MAX) continue;
        Word *w = &words[s->v0];
        w->off = s->key_off;
        w->len = s->key_len;
        for (uint32_t k = 0; k < s->key_len; k++)
            t->syms[s->key_off + k] = byte_id[(unsigned char)seen.keys[s->key_off + k]];
    }
    bpe_map_free(&seen);
    t->words = words;
    t->n_words = n;
    return 0;
}

/* ---------------------------------------------------------------- merging */

/* Adds (sign +1) or removes (-1) the pairs of word w; a pair with token
 * `made` that gains count is stamped with step and learns the word. */
static void add_word_pairs(Trainer *t, uint32_t w, int64_t sign, uint32_t made, uint32_t step) {
    const Word *word = &t->words[w];
    const uint32_t *s = t->syms + word->off;
    for (uint32_t i = 0; i + 1 < word->len; i++) {
        Pair *p = pair_get(t, s[i], s[i + 1]);
        p->count += sign * word->count;
        if (sign > 0 && (s[i] == made || s[i + 1] == made)) {
            pair_note_word(p, w);
            if (p->stamp != step) {
                p->stamp = step;
                if (t->n_raised == t->cap_raised) {
                    t->cap_raised = t->cap_raised ? 2 * t->cap_raised : 256;
                    t->raised = xrealloc(t->raised, t->cap_raised * sizeof *t->raised);
                }
                t->raised[t->n_raised++] = (size_t)(p - t->pairs);
            }
        }
    }
}

/* Applies merge (left, right) -> made to every word that holds it. */
static void apply_merge(Trainer *t, size_t pair_index, uint32_t made, uint32_t step) {
    uint32_t left = t->pairs[pair_index].left, right = t->pairs[pair_index].right;
    /* pair_get may move t->pairs, but this pair's word list stays: made is
     * longer than left and right, so the pair never holds it */
    uint32_t n_words = t->pairs[pair_index].n_words;
    uint32_t *list = t->pairs[pair_index].words;
    for (uint32_t k = 0; k < n_words; k++) {
        uint32_t w = list[k];
        Word *word = &t->words[w];
        uint32_t *s = t->syms + word->off;
        uint32_t i = 0;
        while (i + 1 < word->len && !(s[i] == left && s[i + 1] == right)) i++;
        if (i + 1 >= word->len) continue; /* merged away by an earlier step */
        add_word_pairs(t, w, -1, made, step);
        uint32_t j = 0;
        for (i = 0; i < word->len; j++) {
            if (i + 1 < word->len && s[i] == left && s[i + 1] == right) {
                s[j] = made;
                i += 2;
            } else {
                s[j] = s[i++];
            }
        }
        word->len = j;
        add_word_pairs(t, w, +1, made, step);
    }
}

static void trainer_free(Trainer *t) {
    for (size_t p = 0; p < t->n_pairs; p++) free(t->pairs[p].words);
    free(t->pairs);
    free(t->keys);
    free(t->slots);
    free(t->heap);
    free(t->words);
    free(t->syms);
    free(t->tok_bytes);
    free(t->tok_off);
    free(t->tok_len);
    bpe_map_free(&t->tok_ids);
    free(t->raised);
    free(t->merges);
}

/* ------------------------------------------------------------- writing */

/* The byte-level spelling of a token (GPT-2's printable characters). */
static char *spell(const Trainer *t, uint32_t id) {
    char *s = xmalloc(2 * (size_t)t->tok_len[id] + 1), *p = s;
    for (uint32_t k = 0; k < t->tok_len[id]; k++)
        p += bpe_byte_to_utf8((unsigned char)t->tok_bytes[t->tok_off[id] + k], p);
    *p = '\0';
    return s;
}

static json_t *byte_level(int add_prefix_space, int trim_offsets) {
    return json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
                     add_prefix_space, "trim_offsets", trim_offsets, "use_regex", 1);
}

static int write_tokenizer_json(const Trainer *t, uint32_t eos_id, const char *path) {
    json_t *vocab = json_object(), *merges = json_array();
    for (uint32_t id = 0; id < t->n_tokens; id++) {
        char *s = spell(t, id);
        json_object_set_new(vocab, s, json_integer(id));
        free(s);
    }
    json_object_set_new(vocab, EOS_TEXT, json_integer(eos_id));
    for (size_t m = 0; m < t->n_merges; m++) {
        char *a = spell(t, t->merges[m][0]), *b = spell(t, t->merges[m][1]);
        char *line = xmalloc(strlen(a) + strlen(b) + 2);
        sprintf(line, "%s %s", a, b);
        json_array_append_new(merges, json_string(line));
        free(line);
        free(a);
        free(b);
    }
    json_t *added = json_pack("[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}]", "id", (json_int_t)eos_id,
                              "content", EOS_TEXT, "single_word", 0, "lstrip", 0, "rstrip", 0,
                              "normalized", 0, "special", 1);
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:o, s:o}", "type", "BPE",
                              "dropout", "unk_token", "continuing_subword_prefix",
                              "end_of_word_suffix", "fuse_unk", 0, "vocab", vocab, "merges",
                              merges);
    json_t *root = json_pack("{s:s, s:n, s:n, s:o, s:n, s:o, s:n, s:o, s:o}", "version", "1.0",
                             "truncation", "padding", "added_tokens", added, "normalizer",
                             "pre_tokenizer", byte_level(0, 1), "post_processor", "decoder",
                             byte_level(1, 1), "model", model);
    assert(root); /* json_pack fails only on a malformed format string */
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!text) return err_set("cannot serialize %s (out of memory?)", path);
    size_t len = strlen(text);
    text[len] = '\n'; /* the NUL goes; the length says where the file ends */
    int rc = write_file_atomic(path, text, len + 1);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------- driver */

int bpe_train(const char *corpus_path, int vocab_size, const char *out_json, FILE *log) {
    if (vocab_size < 257 || vocab_size > MAX_TRAIN_VOCAB)
        return err_set("vocab size %d is out of range: a byte-level BPE has 256 byte tokens and "
                       "\"%s\", so give 257 to %d",
                       vocab_size, EOS_TEXT, MAX_TRAIN_VOCAB);
    size_t len;
    char *text = read_file(corpus_path, &len);
    if (!text) return -1;
    if (len >= UINT32_MAX) { /* word offsets are 32-bit */
        free(text);
        return err_set("%s is %zu bytes; retort trains on at most 4 GB — train on a sample",
                       corpus_path, len);
    }
    double t0 = now_seconds();
    Trainer t = {0};
    t.tok_off = xmalloc((size_t)vocab_size * sizeof *t.tok_off);
    t.tok_len = xmalloc((size_t)vocab_size * sizeof *t.tok_len);
    bpe_map_init(&t.tok_ids, (size_t)vocab_size);
    unsigned char order[256];
    for (int b = 0; b < 256; b++) order[b] = (unsigned char)b;
    qsort(order, 256, 1, cmp_byte_by_codepoint);
    uint32_t byte_id[256];
    for (int k = 0; k < 256; k++) byte_id[order[k]] = token_id(&t, (const char *)&order[k], 1);

    int64_t n_pieces;
    int rc = count_words(&t, text, len, byte_id, &n_pieces);
    free(text);
    if (rc != 0) goto done;
    if (log)
        fprintf(log, "%s: %zu bytes, %lld words, %zu distinct (%.1fs)\n", corpus_path, len,
                (long long)n_pieces, t.n_words, now_seconds() - t0);

    pairs_rehash(&t, 1 << 16);
    for (size_t w = 0; w < t.n_words; w++) add_word_pairs(&t, (uint32_t)w, +1, UINT32_MAX, 0);
    for (size_t w = 0; w < t.n_words; w++) { /* word lists, in word order */
        const uint32_t *s = t.syms + t.words[w].off;
        for (uint32_t i = 0; i + 1 < t.words[w].len; i++)
            pair_note_word(pair_get(&t, s[i], s[i + 1]), (uint32_t)w);
    }
    for (size_t p = 0; p < t.n_pairs; p++)
        if (t.pairs[p].count > 0) heap_push(&t, &t.pairs[p]);

    size_t target = (size_t)vocab_size - 1; /* the last id is "<|endoftext|>" */
    uint32_t step = 0;
    while (t.n_tokens < target && t.n_heap > 0) {
        HeapItem top = heap_pop(&t);
        Pair *p = pair_get(&t, top.left, top.right);
        if (p->banned || p->count <= 0) continue;
        if (p->count != top.count) { /* stale: queue it again as it is now */
            heap_push(&t, p);
            continue;
        }
        size_t la = t.tok_len[p->left], lb = t.tok_len[p->right];
        if (la + lb > BPE_MAX_TOKEN_BYTES) {
            p->banned = 1;
            continue;
        }
        char joined[2 * BPE_MAX_TOKEN_BYTES];
        memcpy(joined, t.tok_bytes + t.tok_off[p->left], la);
        memcpy(joined + la, t.tok_bytes + t.tok_off[p->right], lb);
        if (t.n_merges == t.cap_merges) {
            t.cap_merges = t.cap_merges ? 2 * t.cap_merges : 1024;
            t.merges = xrealloc(t.merges, t.cap_merges * sizeof *t.merges);
        }
        t.merges[t.n_merges][0] = p->left;
        t.merges[t.n_merges][1] = p->right;
        t.n_merges++;
        uint32_t made = token_id(&t, joined, la + lb);
        size_t pi = (size_t)(p - t.pairs);
        t.n_raised = 0;
        apply_merge(&t, pi, made, ++step);
        assert(t.pairs[pi].count == 0);
        /* only pairs with `made` gain count (new ones, or old ones when two
         * merges make the same token); queue each once, with its final count */
        for (size_t k = 0; k < t.n_raised; k++)
            if (t.pairs[t.raised[k]].count > 0) heap_push(&t, &t.pairs[t.raised[k]]);
        if (log && t.n_merges % 1000 == 0)
            fprintf(log, "  %zu merges (%.1fs)\n", t.n_merges, now_seconds() - t0);
    }
    if (log) {
        fprintf(log, "%zu merges, vocabulary of %zu with %s", t.n_merges, t.n_tokens + 1,
                EOS_TEXT);
        if (t.n_tokens < target) fprintf(log, " (no pair left to merge before %d)", vocab_size);
        fprintf(log, " (%.1fs)\n", now_seconds() - t0);
    }
    rc = write_tokenizer_json(&t, (uint32_t)t.n_tokens, out_json);
    if (rc == 0 && log) fprintf(log, "wrote %s\n", out_json);
done:
    trainer_free(&t);
    return rc;
}
