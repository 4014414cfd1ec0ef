/* data/tokjson.c — reads a tokenizer.json pipeline (tokjson.h): every
 * normalizer, pre-tokenizer, post-processor and decoder retort runs, with its
 * options as tokenizers 0.23 deserializes them (defaults included), and a
 * refusal naming the component and its JSON path for everything else. The
 * BPE model itself is read by bpe_load.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/bpe_impl.h"
#include "data/tokjson_impl.h"
#include "util/utf8.h"
#include "util/util.h"

static const char *type_of(json_t *obj) {
    const char *t = json_string_value(json_object_get(obj, "type"));
    return t ? t : "(no type)";
}

static int unsupported(const char *path, const char *where, const char *what, json_t *obj,
                       const char *implemented) {
    return err_set("%s: %s: %s %s is not supported (retort implements %s); tokenizers' ids "
                   "cannot be reproduced without it, so the file is refused",
                   path, where, what, type_of(obj), implemented);
}

static int get_bool(json_t *obj, const char *key, int dflt) {
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static char *dup_string(json_t *v, size_t *len) {
    size_t n = json_string_length(v);
    char *s = xmalloc(n + 1);
    memcpy(s, json_string_value(v), n);
    s[n] = '\0';
    if (len) *len = n;
    return s;
}

/* A JSON string holding exactly one character (Metaspace's replacement,
 * Strip's content), into out (UTF-8, 4 bytes at most). */
static int one_char(const char *path, const char *where, json_t *obj, const char *key,
                    const char *dflt, char out[4], size_t *len) {
    json_t *v = json_object_get(obj, key);
    const char *s = json_is_string(v) ? json_string_value(v) : dflt;
    size_t n = json_is_string(v) ? json_string_length(v) : (dflt ? strlen(dflt) : 0);
    uint32_t cp;
    int k = n > 0 ? utf8_decode((const unsigned char *)s, n, &cp) : 0;
    if (!s || k <= 0 || (size_t)k != n)
        return err_set("%s: %s.%s must be a string of one character", path, where, key);
    memcpy(out, s, n);
    *len = n;
    return 0;
}

/* ----------------------------------------------------------- normalizers */

static Norm *push_norm(TokPipeline *p, NormKind kind) {
    p->norms = xrealloc(p->norms, (size_t)(p->n_norms + 1) * sizeof *p->norms);
    Norm *n = &p->norms[p->n_norms++];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    return n;
}

static int parse_normalizer(TokPipeline *p, const char *path, json_t *obj, const char *where) {
    const char *t = type_of(obj);
    char sub[256];
    if (!strcmp(t, "Sequence")) {
        json_t *list = json_object_get(obj, "normalizers");
        if (!json_is_array(list))
            return err_set("%s: %s.normalizers must be an array", path, where);
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", where, i);
            if (parse_normalizer(p, path, item, sub) != 0) return -1;
        }
        return 0;
    }
    static const struct { const char *name; NormKind kind; } plain[] = {
        {"NFC", NORM_NFC}, {"NFD", NORM_NFD}, {"NFKC", NORM_NFKC}, {"NFKD", NORM_NFKD},
        {"Lowercase", NORM_LOWERCASE}};
    for (size_t k = 0; k < sizeof plain / sizeof plain[0]; k++)
        if (!strcmp(t, plain[k].name)) {
            push_norm(p, plain[k].kind);
            return 0;
        }
    if (!strcmp(t, "Prepend")) {
        json_t *v = json_object_get(obj, "prepend");
        if (!json_is_string(v)) return err_set("%s: %s.prepend must be a string", path, where);
        Norm *n = push_norm(p, NORM_PREPEND);
        n->text = dup_string(v, &n->len);
        return 0;
    }
    if (!strcmp(t, "Replace")) {
        json_t *content = json_object_get(obj, "content");
        if (!json_is_string(content))
            return err_set("%s: %s.content must be a string", path, where);
        snprintf(sub, sizeof sub, "%s.pattern", where);
        HfPattern *pat = hf_pattern_new(json_object_get(obj, "pattern"), path, sub);
        if (!pat) return -1;
        Norm *n = push_norm(p, NORM_REPLACE);
        n->pattern = pat;
        n->text = dup_string(content, &n->len);
        return 0;
    }
    if (!strcmp(t, "Strip")) {
        Norm *n = push_norm(p, NORM_STRIP);
        n->left = get_bool(obj, "strip_left", 0);
        n->right = get_bool(obj, "strip_right", 0);
        return 0;
    }
    return unsupported(path, where, "normalizer", obj,
                       "NFC, NFD, NFKC, NFKD, Lowercase, Prepend, Replace, Strip and Sequence");
}

/* ------------------------------------------------------- pre-tokenizers */

static int parse_behavior(const char *path, const char *where, json_t *obj, SplitBehavior dflt,
                          SplitBehavior *out) {
    json_t *v = json_object_get(obj, "behavior");
    if (!v) {
        *out = dflt;
        return 0;
    }
    static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
                                        "MergedWithNext", "Contiguous"};
    const char *s = json_string_value(v);
    for (int k = 0; s && k < 5; k++)
        if (!strcmp(s, names[k])) {
            *out = (SplitBehavior)k;
            return 0;
        }
    return err_set("%s: %s.behavior must be one of Removed, Isolated, MergedWithPrevious, "
                   "MergedWithNext, Contiguous",
                   path, where);
}

static PreTok *push_pre(TokPipeline *p, PreKind kind) {
    p->pres = xrealloc(p->pres, (size_t)(p->n_pres + 1) * sizeof *p->pres);
    PreTok *t = &p->pres[p->n_pres++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    return t;
}

static int parse_prepend_scheme(const char *path, const char *where, json_t *obj,
                                PrependScheme *out) {
    json_t *v = json_object_get(obj, "prepend_scheme");
    const char *s = v ? json_string_value(v) : "always";
    if (!s) return err_set("%s: %s.prepend_scheme must be first, always or never", path, where);
    if (!strcmp(s, "always")) *out = PREPEND_ALWAYS;
    else if (!strcmp(s, "first")) *out = PREPEND_FIRST;
    else if (!strcmp(s, "never")) *out = PREPEND_NEVER;
    else return err_set("%s: %s.prepend_scheme \"%s\" is not first, always or never", path, where, s);
    /* the legacy add_prefix_space: false means never, as tokenizers reads it */
    json_t *legacy = json_object_get(obj, "add_prefix_space");
    if (json_is_false(legacy)) {
        if (*out != PREPEND_NEVER && v)
            return err_set("%s: %s: add_prefix_space false does not match prepend_scheme \"%s\" "
                           "(tokenizers refuses this too)",
                           path, where, s);
        *out = PREPEND_NEVER;
    }
    return 0;
}

static int parse_pre(TokPipeline *p, const char *path, json_t *obj, const char *where) {
    const char *t = type_of(obj);
    char sub[256];
    if (!strcmp(t, "Sequence")) {
        json_t *list = json_object_get(obj, "pretokenizers");
        if (!json_is_array(list))
            return err_set("%s: %s.pretokenizers must be an array", path, where);
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", where, i);
            if (parse_pre(p, path, item, sub) != 0) return -1;
        }
        return 0;
    }
    if (p->n_pres > 0 && p->pres[p->n_pres - 1].kind == PRE_BYTELEVEL)
        return err_set("%s: %s: %s comes after a ByteLevel pre-tokenizer; retort runs ByteLevel "
                       "only as the last pre-tokenizer (it then works on bytes), so the file is "
                       "refused",
                       path, where, t);
    if (!strcmp(t, "Split")) {
        snprintf(sub, sizeof sub, "%s.pattern", where);
        HfPattern *pat = hf_pattern_new(json_object_get(obj, "pattern"), path, sub);
        if (!pat) return -1;
        PreTok *pt = push_pre(p, PRE_SPLIT);
        pt->pattern = pat;
        pt->invert = get_bool(obj, "invert", 0);
        return parse_behavior(path, where, obj, SPLIT_ISOLATED, &pt->behavior);
    }
    if (!strcmp(t, "ByteLevel")) {
        PreTok *pt = push_pre(p, PRE_BYTELEVEL);
        pt->add_prefix_space = get_bool(obj, "add_prefix_space", 0);
        pt->use_regex = get_bool(obj, "use_regex", 1);
        return 0;
    }
    if (!strcmp(t, "Metaspace")) {
        PreTok *pt = push_pre(p, PRE_METASPACE);
        pt->split = get_bool(obj, "split", 1);
        if (one_char(path, where, obj, "replacement", NULL, pt->repl, &pt->repl_len) != 0)
            return -1;
        return parse_prepend_scheme(path, where, obj, &pt->prepend);
    }
    if (!strcmp(t, "Digits")) {
        push_pre(p, PRE_DIGITS)->individual = get_bool(obj, "individual_digits", 0);
        return 0;
    }
    if (!strcmp(t, "Punctuation")) {
        PreTok *pt = push_pre(p, PRE_PUNCTUATION);
        return parse_behavior(path, where, obj, SPLIT_ISOLATED, &pt->behavior);
    }
    if (!strcmp(t, "Whitespace")) {
        /* the regex crate's \w+|[^\w\s]+ (Alphabetic, marks, Nd, Pc, Join_Control) */
        HfPattern *pat = hf_pattern_regex(
            "[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]+|"
            "[^\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}\\s]+",
            path, where);
        if (!pat) return -1;
        PreTok *pt = push_pre(p, PRE_WHITESPACE);
        pt->pattern = pat;
        pt->invert = 1;
        pt->behavior = SPLIT_REMOVED;
        return 0;
    }
    if (!strcmp(t, "WhitespaceSplit")) {
        push_pre(p, PRE_WHITESPACE_SPLIT);
        return 0;
    }
    return unsupported(path, where, "pre-tokenizer", obj,
                       "Split, ByteLevel, Metaspace, Digits, Punctuation, Whitespace, "
                       "WhitespaceSplit and Sequence");
}

/* ------------------------------------------------------------- decoders */

static Dec *push_dec(TokPipeline *p, DecKind kind) {
    p->decs = xrealloc(p->decs, (size_t)(p->n_decs + 1) * sizeof *p->decs);
    Dec *d = &p->decs[p->n_decs++];
    memset(d, 0, sizeof *d);
    d->kind = kind;
    return d;
}

static int parse_decoder(TokPipeline *p, const char *path, json_t *obj, const char *where) {
    const char *t = type_of(obj);
    char sub[256];
    if (!strcmp(t, "Sequence")) {
        json_t *list = json_object_get(obj, "decoders");
        if (!json_is_array(list)) return err_set("%s: %s.decoders must be an array", path, where);
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            snprintf(sub, sizeof sub, "%s.decoders[%zu]", where, i);
            if (parse_decoder(p, path, item, sub) != 0) return -1;
        }
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) return push_dec(p, DEC_BYTELEVEL), 0;
    if (!strcmp(t, "ByteFallback")) return push_dec(p, DEC_BYTEFALLBACK), 0;
    if (!strcmp(t, "Fuse")) return push_dec(p, DEC_FUSE), 0;
    if (!strcmp(t, "Metaspace")) {
        Dec *d = push_dec(p, DEC_METASPACE);
        PrependScheme scheme;
        if (one_char(path, where, obj, "replacement", NULL, d->repl, &d->repl_len) != 0 ||
            parse_prepend_scheme(path, where, obj, &scheme) != 0)
            return -1;
        d->first_dropped = scheme != PREPEND_NEVER;
        return 0;
    }
    if (!strcmp(t, "Strip")) {
        Dec *d = push_dec(p, DEC_STRIP);
        json_t *start = json_object_get(obj, "start"), *stop = json_object_get(obj, "stop");
        if (!json_is_integer(start) || !json_is_integer(stop) || json_integer_value(start) < 0 ||
            json_integer_value(stop) < 0 || json_integer_value(start) > 1 << 20 ||
            json_integer_value(stop) > 1 << 20)
            return err_set("%s: %s.start and .stop must be counts of characters", path, where);
        d->start = (int)json_integer_value(start);
        d->stop = (int)json_integer_value(stop);
        return one_char(path, where, obj, "content", NULL, d->repl, &d->repl_len);
    }
    if (!strcmp(t, "Replace")) {
        json_t *content = json_object_get(obj, "content");
        if (!json_is_string(content))
            return err_set("%s: %s.content must be a string", path, where);
        snprintf(sub, sizeof sub, "%s.pattern", where);
        HfPattern *pat = hf_pattern_new(json_object_get(obj, "pattern"), path, sub);
        if (!pat) return -1;
        Dec *d = push_dec(p, DEC_REPLACE);
        d->pattern = pat;
        d->content = dup_string(content, &d->content_len);
        return 0;
    }
    return unsupported(path, where, "decoder", obj,
                       "ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace and Sequence");
}

/* ------------------------------------------------------ post-processors */

static int template_piece(TokPipeline *p, const char *path, const char *where, json_t *piece,
                          json_t *specials, int *seen_a) {
    json_t *special = json_object_get(piece, "SpecialToken");
    json_t *seq = json_object_get(piece, "Sequence");
    if (seq) {
        const char *id = json_string_value(json_object_get(seq, "id"));
        if (!id || strcmp(id, "A") != 0 || *seen_a)
            return err_set("%s: %s: the single template must hold sequence $A once (it holds "
                           "$%s); retort encodes one text",
                           path, where, id ? id : "?");
        *seen_a = 1;
        return 0;
    }
    const char *name = json_string_value(json_object_get(special, "id"));
    json_t *entry = name ? json_object_get(specials, name) : NULL;
    json_t *ids = json_object_get(entry, "ids");
    if (!json_is_array(ids))
        return err_set("%s: %s: the template names special token \"%s\", which "
                       "post_processor.special_tokens does not define with its ids",
                       path, where, name ? name : "?");
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        uint32_t *dst = *seen_a ? p->suffix_ids : p->prefix_ids;
        int *n = *seen_a ? &p->n_suffix : &p->n_prefix;
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= UINT32_MAX)
            return err_set("%s: %s: special token \"%s\" has an id that is not a "
                           "non-negative integer",
                           path, where, name);
        if (*n == TOKENIZER_MAX_ADDED)
            return err_set("%s: %s: the template adds more than %d tokens on one side", path,
                           where, TOKENIZER_MAX_ADDED);
        dst[(*n)++] = (uint32_t)json_integer_value(v);
    }
    return 0;
}

static int parse_post(TokPipeline *p, const char *path, json_t *obj, const char *where,
                      int *n_templates) {
    const char *t = type_of(obj);
    char sub[256];
    if (!strcmp(t, "Sequence")) {
        json_t *list = json_object_get(obj, "processors");
        if (!json_is_array(list))
            return err_set("%s: %s.processors must be an array", path, where);
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item) {
            snprintf(sub, sizeof sub, "%s.processors[%zu]", where, i);
            if (parse_post(p, path, item, sub, n_templates) != 0) return -1;
        }
        return 0;
    }
    if (!strcmp(t, "ByteLevel")) return 0; /* it moves offsets only */
    if (!strcmp(t, "TemplateProcessing")) {
        if ((*n_templates)++)
            return err_set("%s: %s: a second TemplateProcessing; retort takes one", path, where);
        json_t *single = json_object_get(obj, "single");
        json_t *specials = json_object_get(obj, "special_tokens");
        if (!json_is_array(single))
            return err_set("%s: %s.single must be an array of template pieces", path, where);
        size_t i;
        json_t *piece;
        int seen_a = 0;
        json_array_foreach(single, i, piece) {
            snprintf(sub, sizeof sub, "%s.single[%zu]", where, i);
            if (template_piece(p, path, sub, piece, specials, &seen_a) != 0) return -1;
        }
        if (!seen_a)
            return err_set("%s: %s.single has no $A: the text would be dropped", path, where);
        return 0;
    }
    return unsupported(path, where, "post-processor", obj,
                       "TemplateProcessing, ByteLevel and Sequence");
}

/* ------------------------------------------------------------ the whole */

TokPipeline *tokjson_parse(const char *path, json_t *root, int *byte_level) {
    TokPipeline *p = xcalloc(1, sizeof *p);
    static const char *const must_be_null[] = {"truncation", "padding"};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(root, must_be_null[k]);
        if (v && !json_is_null(v)) {
            err_set("%s: %s is set; it changes what encode returns and retort does not "
                    "implement it — set \"%s\": null (retort's commands cut sequences "
                    "themselves)",
                    path, must_be_null[k], must_be_null[k]);
            goto fail;
        }
    }
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm) && parse_normalizer(p, path, norm, "normalizer") != 0)
        goto fail;
    json_t *pre = json_object_get(root, "pre_tokenizer");
    if (pre && !json_is_null(pre) && parse_pre(p, path, pre, "pre_tokenizer") != 0) goto fail;
    json_t *post = json_object_get(root, "post_processor");
    int n_templates = 0;
    if (post && !json_is_null(post) &&
        parse_post(p, path, post, "post_processor", &n_templates) != 0)
        goto fail;
    json_t *dec = json_object_get(root, "decoder");
    p->has_decoder = dec && !json_is_null(dec);
    if (p->has_decoder && parse_decoder(p, path, dec, "decoder") != 0) goto fail;
    *byte_level = p->n_pres > 0 && p->pres[p->n_pres - 1].kind == PRE_BYTELEVEL;

    json_t *sections = json_pack("{s:O?, s:O?, s:O?, s:O?}", "normalizer", norm, "pre_tokenizer",
                                 pre, "post_processor", post, "decoder", dec);
    p->canonical = sections ? json_dumps(sections, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(sections);
    if (!p->canonical) p->canonical = xcalloc(1, 1);
    p->pre_buf = xcalloc((size_t)p->n_pres + 1, sizeof *p->pre_buf);
    p->pre_cap = xcalloc((size_t)p->n_pres + 1, sizeof *p->pre_cap);
    return p;
fail:
    tokjson_free(p);
    return NULL;
}

static int cmp_added(const void *x, const void *y) {
    const Added *a = *(Added *const *)x, *b = *(Added *const *)y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static void index_added(AddedSet *set, Added *a) {
    unsigned char f = (unsigned char)a->text[0];
    set->by_first[f] = xrealloc(set->by_first[f], (size_t)(set->n_first[f] + 1) * sizeof(Added *));
    set->by_first[f][set->n_first[f]++] = a;
    set->n++;
}

int tokjson_set_added(TokPipeline *p, const char *path, json_t *list, const int64_t *ids) {
    size_t n = json_array_size(list);
    p->added = xcalloc(n ? n : 1, sizeof *p->added);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(list, i);
        json_t *content = json_object_get(t, "content");
        if (!json_is_string(content))
            return err_set("%s: added_tokens[%zu].content must be a string", path, i);
        if (json_string_length(content) == 0) continue; /* tokenizers ignores it */
        Added *a = &p->added[p->n_added++];
        a->id = (uint32_t)ids[i];
        a->special = get_bool(t, "special", 0);
        a->single_word = get_bool(t, "single_word", 0);
        a->lstrip = get_bool(t, "lstrip", 0);
        a->rstrip = get_bool(t, "rstrip", 0);
        a->normalized = get_bool(t, "normalized", !a->special);
        a->text = dup_string(content, &a->len);
        a->content = dup_string(content, &a->content_len);
        if (a->normalized && p->n_norms > 0) { /* matched in its normalized spelling */
            size_t len;
            const char *s = tokjson_normalize(p, a->text, a->len, &len);
            if (len == 0) { /* normalized away: it can never match */
                p->n_added--;
                free(a->text);
                free(a->content);
                continue;
            }
            char *copy = xmalloc(len + 1);
            memcpy(copy, s, len);
            copy[len] = '\0';
            free(a->text);
            a->text = copy;
            a->len = len;
        }
    }
    for (int i = 0; i < p->n_added; i++)
        index_added(p->added[i].normalized ? &p->normalized : &p->raw, &p->added[i]);
    for (int s = 0; s < 2; s++) {
        AddedSet *set = s ? &p->normalized : &p->raw;
        for (int f = 0; f < 256; f++)
            if (set->n_first[f] > 1)
                qsort(set->by_first[f], (size_t)set->n_first[f], sizeof(Added *), cmp_added);
    }
    return 0;
}

void tokjson_set_strings(TokPipeline *p, int n_vocab, const char *const *strings,
                         const size_t *lens) {
    p->n_vocab = n_vocab;
    p->special = xcalloc((size_t)n_vocab, 1);
    p->skip = xcalloc((size_t)n_vocab, 1);
    const char **str = xcalloc((size_t)n_vocab, sizeof *str);
    size_t *len = xcalloc((size_t)n_vocab, sizeof *len);
    bpe_map_init(&p->vocab_strings, (size_t)n_vocab);
    for (int i = 0; i < n_vocab; i++) {
        str[i] = strings[i];
        len[i] = strings[i] ? lens[i] : 0;
        if (strings[i])
            bpe_map_put(&p->vocab_strings, strings[i], lens[i], bpe_hash_bytes(strings[i], lens[i]),
                        NULL)->v0 = (uint32_t)i;
    }
    for (int a = 0; a < p->n_added; a++) { /* tokenizers decodes the normalized spelling */
        uint32_t id = p->added[a].id;
        str[id] = p->added[a].text;
        len[id] = p->added[a].len;
        p->special[id] = (unsigned char)p->added[a].special;
        p->skip[id] = (unsigned char)(p->added[a].special && p->added[a].len ==
                                      p->added[a].content_len &&
                                      !memcmp(p->added[a].text, p->added[a].content,
                                              p->added[a].len));
    }
    p->str_off = xmalloc(((size_t)n_vocab + 1) * sizeof *p->str_off);
    size_t total = 0;
    for (int i = 0; i < n_vocab; i++) total += len[i];
    p->str_bytes = xmalloc(total + 1);
    total = 0;
    for (int i = 0; i < n_vocab; i++) {
        p->str_off[i] = (uint32_t)total;
        if (len[i]) memcpy(p->str_bytes + total, str[i], len[i]);
        total += len[i];
    }
    p->str_off[n_vocab] = (uint32_t)total;
    free(str);
    free(len);
}

int tokjson_special_ids(const TokPipeline *p, const char *path, uint32_t *prefix, int *n_prefix,
                        uint32_t *suffix, int *n_suffix) {
    for (int i = 0; i < p->n_prefix + p->n_suffix; i++) {
        uint32_t id = i < p->n_prefix ? p->prefix_ids[i] : p->suffix_ids[i - p->n_prefix];
        if (id >= (uint32_t)p->n_vocab)
            return err_set("%s: post_processor adds id %u, which is past the vocabulary (%d "
                           "ids)",
                           path, id, p->n_vocab);
    }
    memcpy(prefix, p->prefix_ids, (size_t)p->n_prefix * sizeof *prefix);
    memcpy(suffix, p->suffix_ids, (size_t)p->n_suffix * sizeof *suffix);
    *n_prefix = p->n_prefix;
    *n_suffix = p->n_suffix;
    return 0;
}

int tokjson_is_special(const TokPipeline *p, uint32_t id) {
    return id < (uint32_t)p->n_vocab && p->special[id];
}

int64_t tokjson_added_id(const TokPipeline *p, const char *text, size_t len) {
    for (int a = 0; a < p->n_added; a++) {
        const Added *t = &p->added[a];
        if (t->content_len == len && memcmp(t->content, text, len) == 0) return t->id;
    }
    return -1;
}

int64_t tokjson_token_id(const TokPipeline *p, const char *text, size_t len) {
    int64_t id = tokjson_added_id(p, text, len);
    if (id >= 0) return id;
    const BpeMapSlot *s = bpe_map_get(&p->vocab_strings, text, len, bpe_hash_bytes(text, len));
    return s ? (int64_t)s->v0 : -1;
}

uint64_t tokjson_hash(const TokPipeline *p, uint64_t h) {
    h = bpe_fnv1a(h, p->canonical, strlen(p->canonical));
    for (int a = 0; a < p->n_added; a++) {
        const Added *t = &p->added[a];
        int flags[6] = {(int)t->id, t->special, t->single_word, t->lstrip, t->rstrip,
                        t->normalized};
        h = bpe_fnv1a(h, flags, sizeof flags);
        h = bpe_fnv1a(h, t->text, t->len);
    }
    return h;
}

void tokjson_free(TokPipeline *p) {
    if (!p) return;
    for (int i = 0; i < p->n_norms; i++) {
        free(p->norms[i].text);
        hf_pattern_free(p->norms[i].pattern);
    }
    free(p->norms);
    for (int i = 0; i < p->n_pres; i++) hf_pattern_free(p->pres[i].pattern);
    free(p->pres);
    for (int i = 0; i < p->n_decs; i++) {
        hf_pattern_free(p->decs[i].pattern);
        free(p->decs[i].content);
    }
    free(p->decs);
    for (int i = 0; i < p->n_added; i++) {
        free(p->added[i].text);
        free(p->added[i].content);
    }
    free(p->added);
    for (int f = 0; f < 256; f++) {
        free(p->raw.by_first[f]);
        free(p->normalized.by_first[f]);
    }
    free(p->canonical);
    bpe_map_free(&p->vocab_strings);
    free(p->str_off);
    free(p->str_bytes);
    free(p->special);
    free(p->skip);
    for (int i = 0; i < 2; i++) free(p->norm_buf[i]);
    for (int i = 0; p->pre_buf && i <= p->n_pres; i++) free(p->pre_buf[i]);
    free(p->pre_buf);
    free(p->pre_cap);
    free(p);
}
