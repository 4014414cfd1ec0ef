/* model/model_io.c — GPT weights to and from Hugging Face checkpoint files.
 *
 * Our parameter table already uses HF's names and Conv1D (in, out) layout, so
 * saving is one safetensors tensor per table entry and loading is a name
 * lookup with the two key styles HF has used ("h.0..." in GPT2Model files,
 * "transformer.h.0..." in GPT2LMHeadModel files). A checkpoint's tokenizer
 * travels beside the weights: retort.json names it, copied files spell it. */
#include "model/model_io.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "util/util.h"

int model_save_hf(GPT *m, const char *dir) {
    int n = gpt_num_tensors(m);
    size_t total = gpt_flat_size(m);
    /* bring the parameters to the host once */
    float *host = xmalloc(total * sizeof(float));
    gpt_copy_params_to_host(m, host, total);
    StTensor *t = xcalloc((size_t)n, sizeof(StTensor));
    char (*names)[GPT_PARAM_NAME_LEN + 16] = xcalloc((size_t)n, sizeof *names);
    int count = 0;
    for (int i = 0; i < n; i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (p->lora) continue; /* adapters go to adapter_model.safetensors (model/lora.h) */
        int j = count++;
        snprintf(names[j], sizeof names[j], "transformer.%s", p->name);
        t[j].name = names[j];
        t[j].dtype = ST_F32;
        t[j].ndim = p->ndim;
        t[j].shape[0] = p->shape[0];
        t[j].shape[1] = p->shape[1];
        t[j].data = host + p->offset;
    }
    char path[4096];
    if (path_join(path, sizeof path, dir, "model.safetensors") != 0) return -1;
    static const char *const meta[] = {"format", "pt", NULL};
    int rc = safetensors_write(path, t, count, meta);
    if (rc == 0) rc = hf_config_write(dir, gpt_config(m));
    free(names);
    free(t);
    free(host);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static int is_ignored_key(const char *key) {
    return !strcmp(key, "lm_head.weight")           /* tied to wte */
           || ends_with(key, ".attn.bias")          /* causal mask buffer */
           || ends_with(key, ".attn.masked_bias");  /* old mask constant */
}

int model_load_weights(GPT *m, const char *dir) {
    char path[4096];
    if (path_join(path, sizeof path, dir, "model.safetensors") != 0) return -1;
    SafeTensorsFile *f = safetensors_open(path);
    if (!f) return -1;
    int n = gpt_num_tensors(m);
    size_t total = gpt_flat_size(m);
    float *host = xcalloc(total, sizeof(float));
    gpt_copy_params_to_host(m, host, total); /* keeps any LoRA adapters as they are */
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (p->lora) continue;
        char prefixed[GPT_PARAM_NAME_LEN + 16];
        snprintf(prefixed, sizeof prefixed, "transformer.%s", p->name);
        const StTensor *t = safetensors_find(f, prefixed);
        if (!t) t = safetensors_find(f, p->name);
        if (!t) {
            rc = err_set("%s: tensor '%s' is missing (a GPT-2 checkpoint of %d layers needs it)",
                         path, prefixed, gpt_config(m)->n_layer);
            break;
        }
        int ok = t->ndim == p->ndim && t->shape[0] == p->shape[0] &&
                 (p->ndim == 1 || t->shape[1] == p->shape[1]);
        if (!ok) {
            rc = err_set("%s: tensor '%s' has shape [%lld%s%lld] but the model (config.json) "
                         "expects [%d%s%d]",
                         path, t->name, (long long)t->shape[0], t->ndim > 1 ? ", " : "",
                         t->ndim > 1 ? (long long)t->shape[1] : 0LL, p->shape[0],
                         p->ndim > 1 ? ", " : "", p->ndim > 1 ? p->shape[1] : 0);
            break;
        }
        rc = safetensors_read_f32(f, t, host + p->offset, p->numel);
    }
    /* refuse tensors we would silently drop */
    for (int i = 0; i < safetensors_count(f) && rc == 0; i++) {
        const char *key = safetensors_get(f, i)->name;
        const char *bare = strncmp(key, "transformer.", 12) == 0 ? key + 12 : key;
        const ParamInfo *known = gpt_find_tensor(m, bare);
        if ((!known || known->lora) && !is_ignored_key(bare) && !is_ignored_key(key))
            rc = err_set("%s: unexpected tensor '%s' (not part of a GPT-2 model with this "
                         "config.json)", path, key);
    }
    if (rc == 0) gpt_copy_params_to_device(m, host, total);
    free(host);
    safetensors_close(f);
    return rc;
}

GPT *model_load_hf(const char *dir, const Backend *be) {
    GPTConfig cfg;
    if (hf_config_read(dir, &cfg) != 0) return NULL;
    GPT *m = gpt_create(&cfg, be);
    if (!m) return NULL;
    if (model_load_weights(m, dir) != 0) {
        gpt_free(m);
        return NULL;
    }
    return m;
}

/* ------------------------------------------------------- the tokenizer */

/* dir/retort.json's tokenizer into name; 1 when there is no record. */
static int read_record(const char *dir, char *name, size_t cap) {
    char path[4096];
    if (path_join(path, sizeof path, dir, MODEL_RECORD_FILE) != 0) return -1;
    if (!path_exists(path)) return 1;
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    if (!root)
        return err_set("%s:%d: malformed JSON (%s); delete it if the checkpoint's tokenizer is "
                       "known, and pass --tokenizer",
                       path, e.line, e.text);
    const char *v = json_string_value(json_object_get(root, "tokenizer"));
    int rc = 0;
    if (!v || !*v || strlen(v) >= cap)
        rc = err_set("%s: \"tokenizer\" must be a tokenizer's name (\"bytes\" or "
                     "\"bpe:LABEL:HASH\"); delete the file and pass --tokenizer",
                     path);
    else
        snprintf(name, cap, "%s", v);
    json_decref(root);
    return rc;
}

int model_tokenizer_name(const char *dir, char *name, size_t cap) {
    name[0] = '\0';
    int rc = read_record(dir, name, cap);
    if (rc < 0) return -1;
    if (!tokenizer_files_in(dir)) return 0;
    Tokenizer *tok = tokenizer_load(dir);
    if (!tok) return -1;
    if (rc == 1) {
        snprintf(name, cap, "%s", tok->name);
    } else if (tokenizer_same(name, tok->name) == 0) {
        err_set("%s: the tokenizer files there are %s, but %s records %s; the checkpoint is "
                "inconsistent: restore its files or its record",
                dir, tok->name, MODEL_RECORD_FILE, name);
        rc = -1;
    }
    tokenizer_free(tok);
    return rc < 0 ? -1 : 0;
}

static int copy_file(const char *from, const char *to) {
    size_t len;
    char *data = read_file(from, &len);
    if (!data) return -1;
    int rc = write_file_atomic(to, data, len);
    free(data);
    return rc;
}

int model_tokenizer_save(const char *dir, const char *name, const char *from_dir) {
    char from[4096], to[4096];
    if (from_dir && from_dir[0] && strcmp(from_dir, dir) != 0)
        for (int i = 0; TOKENIZER_FILES[i]; i++) {
            if (path_join(from, sizeof from, from_dir, TOKENIZER_FILES[i]) != 0 ||
                path_join(to, sizeof to, dir, TOKENIZER_FILES[i]) != 0)
                return -1;
            if (path_exists(from) && copy_file(from, to) != 0) return -1;
        }
    if (tokenizer_kind(name) == TOKENIZER_UNKNOWN) return 0;
    json_t *root = json_object();
    json_object_set_new(root, "tokenizer", json_string(name));
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    size_t n = strlen(text);
    text = xrealloc(text, n + 2);
    text[n] = '\n';
    int rc = path_join(to, sizeof to, dir, MODEL_RECORD_FILE);
    if (rc == 0) rc = write_file_atomic(to, text, n + 1);
    free(text);
    return rc;
}

Tokenizer *model_tokenizer_load(const char *dir, const char *spec, int V) {
    char recorded[256];
    int rc = read_record(dir, recorded, sizeof recorded);
    if (rc < 0) return NULL;
    if (rc == 1) recorded[0] = '\0';
    Tokenizer *tok = NULL;
    if (spec) {
        char own[256]; /* the record, or the files in dir */
        if (model_tokenizer_name(dir, own, sizeof own) != 0) return NULL;
        if (!(tok = tokenizer_load(spec))) return NULL;
        if (tokenizer_same(tok->name, own) == 0) {
            err_set("--tokenizer %s is %s, but the model %s was trained with %s; leave "
                    "--tokenizer out to use the model's own, or give the one it was trained "
                    "with",
                    spec, tok->name, dir, own);
            tokenizer_free(tok);
            return NULL;
        }
    } else if (tokenizer_files_in(dir)) {
        if (!(tok = tokenizer_load(dir))) return NULL;
        if (tokenizer_same(tok->name, recorded) == 0) {
            err_set("%s: its tokenizer files are %s, but %s records %s; the checkpoint is "
                    "inconsistent: restore its files or its record, or pass --tokenizer",
                    dir, tok->name, MODEL_RECORD_FILE, recorded);
            tokenizer_free(tok);
            return NULL;
        }
    } else if (tokenizer_kind(recorded) == TOKENIZER_BYTES ||
               (tokenizer_kind(recorded) == TOKENIZER_UNKNOWN && V == 257)) {
        tok = tokenizer_bytes();
    } else if (tokenizer_kind(recorded) == TOKENIZER_BPE) {
        err_set("the model %s was trained with tokenizer %s (%s/%s), whose files are not in "
                "%s; pass --tokenizer with that tokenizer.json or the directory holding it",
                dir, recorded, dir, MODEL_RECORD_FILE, dir);
        return NULL;
    } else {
        err_set("the model %s has vocab_size %d and says nothing of its tokenizer (no "
                "tokenizer.json, vocab.json + merges.txt or encoder.json + vocab.bpe, no %s); "
                "the byte tokenizer has 257 ids, so pass --tokenizer with the model's "
                "tokenizer.json or its directory",
                dir, V, MODEL_RECORD_FILE);
        return NULL;
    }
    if (tok->vocab_size > V) {
        err_set("tokenizer %s has %d ids but the model %s has vocab_size %d; its ids would be "
                "out of range: give the tokenizer the model was trained with",
                tok->name, tok->vocab_size, dir, V);
        tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

int model_tokenizer_check(const char *dir, int V, const Tokenizer *tok) {
    char own[256];
    if (model_tokenizer_name(dir, own, sizeof own) != 0) return -1;
    if (tokenizer_same(own, tok->name) == 0)
        return err_set("the model %s was trained with tokenizer %s, but this command uses %s; "
                       "every model of one command must share its tokenizer",
                       dir, own, tok->name);
    if (tok->vocab_size > V)
        return err_set("tokenizer %s has %d ids but the model %s has vocab_size %d; its ids "
                       "would be out of range",
                       tok->name, tok->vocab_size, dir, V);
    return 0;
}
