/* data/bpe_load.c — builds the BPE model of bpe_impl.h from the files GPT-2
 * tokenizers ship as: a Hugging Face tokenizer.json, or a vocabulary JSON
 * (encoder.json / vocab.json) with a merges list (vocab.bpe / merges.txt).
 *
 * Whatever the source, loading reduces to the same three inputs — the
 * vocabulary object (token string -> id), the merges as string pairs in rank
 * order, and the added tokens — and one builder turns those into ids. Token
 * strings are GPT-2's printable spelling of bytes (bytes_to_unicode); a string
 * with a character outside that alphabet (an added token such as "<pad>" is
 * fine, "日本" is not) stands for its own UTF-8 bytes.
 *
 * Anything in a tokenizer.json that would change the ids and that this
 * encoder does not implement (normalizers, other pre-tokenizers, subword
 * prefixes, dropout, post-processors that add tokens, added tokens with
 * lstrip/rstrip/single_word) is refused with the field named.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/bpe_impl.h"
#include "util/utf8.h"
#include "util/util.h"

#define EOS_TEXT "<|endoftext|>"
#define MAX_VOCAB (1 << 24)

typedef struct {
    const char *a, *b;
    size_t a_len, b_len;
    size_t where; /* line number in a merges file, index in a JSON array */
} MergeText;

typedef struct {
    const char *text;
    size_t len;
    int64_t id;
} AddedText;

typedef struct {
    const char *path;        /* the vocabulary file, for messages */
    const char *merges_path; /* the merges file (may equal path) */
    int merges_in_json;      /* messages say merges[i] rather than line i */
    json_t *vocab;           /* object: token string -> id */
    MergeText *merges;
    size_t n_merges;
    AddedText *added;
    size_t n_added;
    int add_prefix_space, ignore_merges;
} Source;

/* ----------------------------------------------------------- the builder */

/* The bytes a vocabulary string stands for, written to out (len bytes at
 * most); returns their count. Jansson hands over well-formed UTF-8 only; a
 * sequence that is not, like a character outside the byte alphabet, makes
 * the string its own bytes. */
static size_t token_bytes(const char *key, size_t len, char *out) {
    const unsigned char *s = (const unsigned char *)key;
    size_t i = 0, n = 0;
    while (i < len) {
        uint32_t cp;
        int step = utf8_decode(s + i, len - i, &cp);
        int b = step > 0 ? bpe_codepoint_to_byte(cp) : -1;
        if (b < 0) { /* not byte-level: the string is its own bytes */
            memcpy(out, key, len);
            return len;
        }
        out[n++] = (char)b;
        i += (size_t)step;
    }
    return n;
}

static int check_id(const Source *src, const char *what, const char *text, json_t *v,
                    int64_t *id) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        json_integer_value(v) >= MAX_VOCAB)
        return err_set("%s: %s \"%s\" has id %s; ids must be integers in [0, %d) — fix the "
                       "file",
                       src->path, what, text,
                       json_is_integer(v) ? "out of range" : "not an integer", MAX_VOCAB);
    *id = json_integer_value(v);
    return 0;
}

static int cmp_special(const void *x, const void *y) {
    const Special *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Token strings and lengths per id, added tokens over vocabulary entries. */
static int fill_tokens(const Source *src, Bpe *b) {
    size_t n = (size_t)b->n_vocab;
    int32_t *len = xmalloc(n * sizeof *len);
    const char **str = xcalloc(n, sizeof *str);
    size_t *str_len = xcalloc(n, sizeof *str_len);
    char *added = xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) len[i] = -1;
    char buf[4 * BPE_MAX_TOKEN_BYTES + 8];
    int rc = 0;
    const char *key;
    size_t key_len;
    json_t *v;
    json_object_keylen_foreach(src->vocab, key, key_len, v) {
        int64_t id = json_integer_value(v);
        if (str[id]) {
            rc = err_set("%s: id %lld is given to both \"%s\" and \"%s\"; every id must name "
                         "one token — fix the vocabulary",
                         src->path, (long long)id, str[id], key);
            goto done;
        }
        size_t k = key_len <= sizeof buf ? token_bytes(key, key_len, buf) : key_len;
        str[id] = key;
        str_len[id] = key_len;
        len[id] = (int32_t)(k < INT32_MAX ? k : INT32_MAX);
    }
    for (size_t a = 0; a < src->n_added; a++) {
        int64_t id = src->added[a].id;
        str[id] = src->added[a].text;
        str_len[id] = src->added[a].len;
        len[id] = (int32_t)(src->added[a].len < INT32_MAX ? src->added[a].len : INT32_MAX);
        added[id] = 1;
    }
    b->tok_off = xmalloc((n + 1) * sizeof *b->tok_off);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (len[i] > BPE_MAX_TOKEN_BYTES) {
            rc = err_set("%s: token %zu (\"%.40s...\") is %d bytes; retort takes tokens of at "
                         "most %d bytes",
                         src->path, i, str[i], len[i], BPE_MAX_TOKEN_BYTES);
            goto done;
        }
        b->tok_off[i] = (uint32_t)total;
        total += len[i] > 0 ? (size_t)len[i] : 0;
    }
    b->tok_off[n] = (uint32_t)total;
    b->tok_bytes = xmalloc(total);
    for (size_t i = 0; i < n; i++) {
        if (len[i] <= 0) continue; /* a hole in the ids decodes to nothing */
        char *out = b->tok_bytes + b->tok_off[i];
        if (added[i]) memcpy(out, str[i], str_len[i]);
        else token_bytes(str[i], str_len[i], out);
    }
done:
    free(len);
    free(str);
    free(str_len);
    free(added);
    return rc;
}

static int64_t lookup(const Source *src, const char *s, size_t len) {
    json_t *v = json_object_getn(src->vocab, s, len);
    return v ? json_integer_value(v) : -1;
}

static int fill_merges(const Source *src, Bpe *b) {
    b->merge_bits = 6;
    while (((size_t)1 << b->merge_bits) * 3 < src->n_merges * 4 + 4) b->merge_bits++;
    size_t cap = (size_t)1 << b->merge_bits;
    b->merges = xmalloc(cap * sizeof *b->merges);
    for (size_t i = 0; i < cap; i++) b->merges[i].key = MERGE_EMPTY;
    char *joined = NULL;
    size_t joined_cap = 0;
    int rc = 0;
    for (size_t r = 0; r < src->n_merges; r++) {
        const MergeText *m = &src->merges[r];
        char where[64];
        snprintf(where, sizeof where, src->merges_in_json ? "merges[%zu]" : "line %zu", m->where);
        int64_t left = lookup(src, m->a, m->a_len), right = lookup(src, m->b, m->b_len);
        if (left < 0 || right < 0) {
            const char *bad = left < 0 ? m->a : m->b;
            int bad_len = (int)(left < 0 ? m->a_len : m->b_len);
            rc = err_set("%s, %s: merge \"%.*s %.*s\" names \"%.*s\", which is not in the "
                         "vocabulary %s — the merges and vocabulary files do not belong together",
                         src->merges_path, where, (int)m->a_len, m->a, (int)m->b_len, m->b,
                         bad_len, bad, src->path);
            break;
        }
        if (m->a_len + m->b_len > joined_cap) {
            joined_cap = 2 * (m->a_len + m->b_len);
            joined = xrealloc(joined, joined_cap);
        }
        memcpy(joined, m->a, m->a_len);
        memcpy(joined + m->a_len, m->b, m->b_len);
        int64_t merged = lookup(src, joined, m->a_len + m->b_len);
        if (merged < 0) {
            rc = err_set("%s, %s: merge \"%.*s %.*s\" makes \"%.*s%.*s\", which is not in the "
                         "vocabulary %s — the merges and vocabulary files do not belong together",
                         src->merges_path, where, (int)m->a_len, m->a, (int)m->b_len, m->b,
                         (int)m->a_len, m->a, (int)m->b_len, m->b, src->path);
            break;
        }
        bpe_add_merge(b, (uint32_t)left, (uint32_t)right, (uint32_t)r, (uint32_t)merged);
    }
    b->n_merges = (int)src->n_merges;
    free(joined);
    return rc;
}

static Bpe *build(const Source *src, uint64_t *hash) {
    Bpe *b = xcalloc(1, sizeof *b);
    int64_t max_id = -1;
    const char *key;
    json_t *v;
    json_object_foreach(src->vocab, key, v) {
        int64_t id = 0;
        if (check_id(src, "vocabulary entry", key, v, &id) != 0) goto fail;
        if (id > max_id) max_id = id;
    }
    for (size_t a = 0; a < src->n_added; a++)
        if (src->added[a].id > max_id) max_id = src->added[a].id;
    if (max_id < 0) {
        err_set("%s: the vocabulary is empty", src->path);
        goto fail;
    }
    b->n_vocab = (int)max_id + 1;
    if (fill_tokens(src, b) != 0) goto fail;
    for (int byte = 0; byte < 256; byte++) {
        char s[2];
        int n = bpe_byte_to_utf8((unsigned char)byte, s);
        int64_t id = lookup(src, s, (size_t)n);
        if (id < 0) {
            err_set("%s: the vocabulary lacks \"%.*s\", the token of byte 0x%02x; a byte-level "
                    "BPE needs all 256 byte tokens (is this a byte-level tokenizer?)",
                    src->path, n, s, byte);
            goto fail;
        }
        b->byte_id[byte] = (uint32_t)id;
    }
    if (fill_merges(src, b) != 0) goto fail;

    b->n_specials = (int)src->n_added;
    b->specials = xcalloc(src->n_added, sizeof *b->specials);
    b->special_next = xcalloc(src->n_added, sizeof *b->special_next);
    for (size_t a = 0; a < src->n_added; a++) {
        Special *s = &b->specials[a];
        s->len = src->added[a].len;
        s->text = xmalloc(s->len + 1);
        memcpy(s->text, src->added[a].text, s->len);
        s->text[s->len] = '\0';
        s->id = (uint32_t)src->added[a].id;
    }
    qsort(b->specials, (size_t)b->n_specials, sizeof *b->specials, cmp_special);

    b->eos_id = -1;
    for (int k = 0; k < b->n_specials; k++)
        if (strcmp(b->specials[k].text, EOS_TEXT) == 0) b->eos_id = (int)b->specials[k].id;
    if (b->eos_id < 0) b->eos_id = (int)lookup(src, EOS_TEXT, strlen(EOS_TEXT));
    if (b->eos_id < 0) {
        err_set("%s: the vocabulary has no \"%s\" token; retort ends every document with it — "
                "add it as an added (special) token",
                src->path, EOS_TEXT);
        goto fail;
    }
    b->add_prefix_space = src->add_prefix_space;
    b->ignore_merges = src->ignore_merges;
    if (b->ignore_merges) {
        bpe_map_init(&b->vocab_map, (size_t)b->n_vocab);
        for (int id = b->n_vocab - 1; id >= 0; id--) { /* the smallest id wins a tie */
            size_t len = b->tok_off[id + 1] - b->tok_off[id];
            if (len == 0) continue;
            const char *t = b->tok_bytes + b->tok_off[id];
            bpe_map_put(&b->vocab_map, t, len, bpe_hash_bytes(t, len), NULL)->v0 =
                (uint32_t)id;
        }
    }
    bpe_map_init(&b->cache, 1 << 12);
    b->re = bpe_regex_new();
    if (!b->re) goto fail;

    /* what the ids mean, whichever files spelled it: tokens, merges, specials */
    uint64_t h = bpe_fnv1a(BPE_FNV_OFFSET, b->tok_off, ((size_t)b->n_vocab + 1) * 4);
    h = bpe_fnv1a(h, b->tok_bytes, b->tok_off[b->n_vocab]);
    for (size_t r = 0; r < src->n_merges; r++) {
        int64_t ids[2] = {lookup(src, src->merges[r].a, src->merges[r].a_len),
                          lookup(src, src->merges[r].b, src->merges[r].b_len)};
        h = bpe_fnv1a(h, ids, sizeof ids);
    }
    for (int k = 0; k < b->n_specials; k++) h = bpe_fnv1a(h, &b->specials[k].id, 4);
    h = bpe_fnv1a(h, &b->add_prefix_space, sizeof b->add_prefix_space);
    h = bpe_fnv1a(h, &b->ignore_merges, sizeof b->ignore_merges);
    *hash = h;
    return b;
fail:
    bpe_free(b);
    return NULL;
}

static Tokenizer *finish(const Source *src, const char *spec) {
    uint64_t hash;
    Bpe *b = build(src, &hash);
    if (!b) return NULL;
    const char *base = strrchr(spec, '/');
    base = base && base[1] ? base + 1 : spec;
    char name[128];
    snprintf(name, sizeof name, "bpe:%.80s:%016llx", base, (unsigned long long)hash);
    return bpe_tokenizer(b, name);
}

/* ------------------------------------------------------------- sources */

static json_t *load_json(const char *path) {
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root)
        err_set("%s:%d:%d: malformed JSON: %s — is this the right file?", path, e.line, e.column,
                e.text);
    return root;
}

/* merges.txt / vocab.bpe: "#version" header lines, then "left right" per line. */
static int parse_merges_file(const char *path, char *text, size_t len, MergeText **out,
                             size_t *n_out) {
    size_t cap = 1024, n = 0, line_no = 0;
    MergeText *m = xmalloc(cap * sizeof *m);
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *line_end = nl ? nl : end;
        line_no++;
        size_t l = (size_t)(line_end - p);
        if (l > 0 && p[l - 1] == '\r') l--;
        if (l > 0 && !(l >= 8 && memcmp(p, "#version", 8) == 0)) {
            char *sp = memchr(p, ' ', l);
            if (!sp || memchr(sp + 1, ' ', l - (size_t)(sp + 1 - p)) || sp == p ||
                sp + 1 == p + l) {
                free(m);
                return err_set("%s, line %zu: \"%.*s\" is not a merge (two tokens separated by "
                               "one space) — is this a merges file?",
                               path, line_no, (int)(l < 80 ? l : 80), p);
            }
            if (n == cap) m = xrealloc(m, (cap *= 2) * sizeof *m);
            m[n++] = (MergeText){p, sp + 1, (size_t)(sp - p), (size_t)(p + l - sp - 1), line_no};
        }
        p = line_end + 1;
    }
    *out = m;
    *n_out = n;
    return 0;
}

/* encoder.json + vocab.bpe, or vocab.json + merges.txt */
static Tokenizer *load_vocab_merges(const char *dir, const char *vocab_path,
                                    const char *merges_path) {
    Tokenizer *tok = NULL;
    Source src = {.path = vocab_path, .merges_path = merges_path};
    size_t len;
    char *text = read_file(merges_path, &len);
    json_t *vocab = text ? load_json(vocab_path) : NULL;
    if (!vocab) goto done;
    if (!json_is_object(vocab)) {
        err_set("%s: expected a JSON object mapping token strings to ids", vocab_path);
        goto done;
    }
    src.vocab = vocab;
    if (parse_merges_file(merges_path, text, len, &src.merges, &src.n_merges) != 0) goto done;
    /* the vocabulary's own "<|endoftext|>" is the special token, as in GPT2Tokenizer */
    AddedText eos = {EOS_TEXT, strlen(EOS_TEXT), -1};
    json_t *v = json_object_get(vocab, EOS_TEXT);
    if (v && check_id(&src, "vocabulary entry", EOS_TEXT, v, &eos.id) == 0) {
        src.added = &eos;
        src.n_added = 1;
    } else if (v) {
        goto done;
    }
    tok = finish(&src, dir);
done:
    free(src.merges);
    json_decref(vocab);
    free(text);
    return tok;
}

static int is_null_or(json_t *v, const char *empty_string) {
    return !v || json_is_null(v) ||
           (empty_string && json_is_string(v) && strcmp(json_string_value(v), empty_string) == 0);
}

static const char *type_of(json_t *obj) {
    const char *t = json_string_value(json_object_get(obj, "type"));
    return t ? t : "(no type)";
}

/* The tokenizer.json fields that shape ids, checked against what we implement. */
static int check_pipeline(const char *path, json_t *root, json_t *model, Source *src) {
    const char *fix = "retort reads GPT-2 style byte-level BPE tokenizers";
    json_t *norm = json_object_get(root, "normalizer");
    if (!is_null_or(norm, NULL))
        return err_set("%s: normalizer %s is not supported; %s (normalizer null)", path,
                       type_of(norm), fix);
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (pre && !strcmp(type_of(pre), "Sequence")) {
        json_t *list = json_object_get(pre, "pretokenizers");
        if (json_array_size(list) == 1) pre = json_array_get(list, 0);
    }
    if (!pre || strcmp(type_of(pre), "ByteLevel") != 0)
        return err_set("%s: pre_tokenizer %s is not supported; %s (pre_tokenizer ByteLevel)", path,
                       pre ? type_of(pre) : "null", fix);
    json_t *use_regex = json_object_get(pre, "use_regex");
    if (use_regex && !json_is_true(use_regex))
        return err_set("%s: pre_tokenizer ByteLevel with use_regex false is not supported; %s",
                       path, fix);
    src->add_prefix_space = json_is_true(json_object_get(pre, "add_prefix_space"));
    json_t *post = json_object_get(root, "post_processor");
    if (!is_null_or(post, NULL) && strcmp(type_of(post), "ByteLevel") != 0)
        return err_set("%s: post_processor %s is not supported (retort adds no tokens around a "
                       "text; set it to null or ByteLevel)",
                       path, type_of(post));
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE") != 0)
        return err_set("%s: model type %s is not supported; %s (model BPE)", path, mtype, fix);
    if (!is_null_or(json_object_get(model, "continuing_subword_prefix"), "") ||
        !is_null_or(json_object_get(model, "end_of_word_suffix"), ""))
        return err_set("%s: BPE with continuing_subword_prefix or end_of_word_suffix is not "
                       "supported; %s",
                       path, fix);
    json_t *dropout = json_object_get(model, "dropout");
    if (!is_null_or(dropout, NULL) && json_number_value(dropout) != 0.0)
        return err_set("%s: BPE dropout is not supported (it makes encoding random); set "
                       "model.dropout to null",
                       path);
    src->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    return 0;
}

static int read_added(const char *path, json_t *root, Source *src) {
    json_t *list = json_object_get(root, "added_tokens");
    if (!list || json_is_null(list)) return 0;
    if (!json_is_array(list)) return err_set("%s: added_tokens must be an array", path);
    src->added = xcalloc(json_array_size(list), sizeof *src->added);
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) {
        json_t *content = json_object_get(t, "content");
        if (!json_is_string(content) || json_string_length(content) == 0)
            return err_set("%s: added_tokens[%zu] has no content string", path, i);
        AddedText *a = &src->added[src->n_added++];
        a->text = json_string_value(content);
        a->len = json_string_length(content);
        if (check_id(src, "added token", a->text, json_object_get(t, "id"), &a->id) != 0)
            return -1;
        static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++)
            if (json_is_true(json_object_get(t, unsupported[k])))
                return err_set("%s: added token \"%s\" has %s true, which retort does not "
                               "implement; set it to false",
                               path, a->text, unsupported[k]);
    }
    return 0;
}

static int read_json_merges(const char *path, json_t *merges, Source *src) {
    if (!json_is_array(merges))
        return err_set("%s: model.merges must be an array of \"left right\" strings or "
                       "[left, right] pairs",
                       path);
    src->merges = xcalloc(json_array_size(merges), sizeof *src->merges);
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        MergeText *t = &src->merges[src->n_merges++];
        t->where = i;
        if (json_is_string(m)) {
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            size_t len = json_string_length(m);
            if (sp && sp != s && sp[1] && !strchr(sp + 1, ' ')) {
                *t = (MergeText){s, sp + 1, (size_t)(sp - s), len - (size_t)(sp + 1 - s), i};
                continue;
            }
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
            *t = (MergeText){json_string_value(a), json_string_value(b), json_string_length(a),
                             json_string_length(b), i};
            continue;
        }
        return err_set("%s: model.merges[%zu] is not a \"left right\" string or a [left, right] "
                       "pair",
                       path, i);
    }
    return 0;
}

static Tokenizer *load_tokenizer_json(const char *path, const char *spec) {
    Tokenizer *tok = NULL;
    Source src = {.path = path, .merges_path = path, .merges_in_json = 1};
    json_t *root = load_json(path);
    if (!root) return NULL;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(root) || !json_is_object(model)) {
        err_set("%s: no \"model\" object; is this a Hugging Face tokenizer.json?", path);
        goto done;
    }
    src.vocab = json_object_get(model, "vocab");
    if (!json_is_object(src.vocab)) {
        err_set("%s: model.vocab must be an object mapping token strings to ids", path);
        goto done;
    }
    if (check_pipeline(path, root, model, &src) != 0 || read_added(path, root, &src) != 0 ||
        read_json_merges(path, json_object_get(model, "merges"), &src) != 0)
        goto done;
    tok = finish(&src, spec);
done:
    free(src.merges);
    free(src.added);
    json_decref(root);
    return tok;
}

Tokenizer *bpe_load(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        err_set("tokenizer %s: %s; give \"bytes\", a tokenizer.json, or a directory with "
                "tokenizer.json, encoder.json + vocab.bpe, or vocab.json + merges.txt",
                path, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) return load_tokenizer_json(path, path);
    char a[4096], b[4096];
    if (path_join(a, sizeof a, path, "tokenizer.json") != 0) return NULL;
    if (path_exists(a)) return load_tokenizer_json(a, path);
    static const char *const pairs[][2] = {{"encoder.json", "vocab.bpe"},
                                           {"vocab.json", "merges.txt"}};
    for (int k = 0; k < 2; k++) {
        if (path_join(a, sizeof a, path, pairs[k][0]) != 0 ||
            path_join(b, sizeof b, path, pairs[k][1]) != 0)
            return NULL;
        if (path_exists(a) && path_exists(b)) return load_vocab_merges(path, a, b);
    }
    err_set("tokenizer directory %s holds none of tokenizer.json, encoder.json + vocab.bpe, "
            "vocab.json + merges.txt",
            path);
    return NULL;
}
