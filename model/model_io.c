/* model/model_io.c — model weights to and from Hugging Face checkpoint
 * directories (see model_io.h).
 *
 * The parameter table already uses Hugging Face's names and layouts (GPT-2's
 * Conv1D (in, out), the Llama families' nn.Linear (out, in)), so a save is one
 * safetensors tensor per table entry and a load is a name lookup: GPT-2 keys
 * are "transformer." + the table name, the Llama families' are the table
 * names themselves. Neither direction holds the model twice: saving streams
 * each tensor from the backend through one tensor-sized buffer into the file
 * (converted to bf16/fp16 on the way when asked), loading converts slices of
 * the memory-mapped file straight into the backend's parameters and lets each
 * tensor's pages go once it is in. Past HF_DEFAULT_MAX_SHARD_BYTES the
 * weights go into shards with transformers' index file. A checkpoint's
 * tokenizer travels beside the weights: retort.json names it, copied files
 * spell it. */
#include "model/model_io.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/backend.h"
#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "util/util.h"

/* ------------------------------------------------------- tensor names */

/* The checkpoint key of a table tensor: GPT2LMHeadModel's files prefix the
 * GPT2Model names; the Llama families' table names are the keys already. */
static void checkpoint_key(const GPT *m, const ParamInfo *p, char *buf, size_t cap) {
    snprintf(buf, cap, "%s%s", gpt_config(m)->arch == ARCH_GPT2 ? "transformer." : "", p->name);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Keys a checkpoint may hold that are not parameters of the model. */
static int is_ignored_key(const GPT *m, const char *key) {
    if (gpt_config(m)->arch == ARCH_GPT2) {
        const char *bare = strncmp(key, "transformer.", 12) == 0 ? key + 12 : key;
        return !strcmp(bare, "lm_head.weight")          /* tied to wte */
               || ends_with(bare, ".attn.bias")         /* causal mask buffer */
               || ends_with(bare, ".attn.masked_bias"); /* old mask constant */
    }
    return (!gpt_config(m)->untied_head && !strcmp(key, "lm_head.weight")) /* tied */
           || ends_with(key, ".rotary_emb.inv_freq"); /* a buffer older files kept */
}

/* The table tensor a checkpoint key names (both key styles of each family:
 * "h.0..." and "transformer.h.0..." for GPT-2, "model.layers.0..." and the
 * base model's "layers.0..." for the Llama families), or NULL. */
static const ParamInfo *tensor_of_key(const GPT *m, const char *key) {
    const ParamInfo *p;
    if (gpt_config(m)->arch == ARCH_GPT2) {
        p = gpt_find_tensor(m, strncmp(key, "transformer.", 12) == 0 ? key + 12 : key);
    } else {
        char prefixed[GPT_PARAM_NAME_LEN + 8];
        p = gpt_find_tensor(m, key);
        if (!p && strlen(key) + 7 < sizeof prefixed) {
            snprintf(prefixed, sizeof prefixed, "model.%s", key);
            p = gpt_find_tensor(m, prefixed);
        }
    }
    return p && !p->lora ? p : NULL;
}

static const char *family_name(const GPT *m) {
    static const char *const names[ARCH_COUNT] = {"GPT-2", "Llama", "Mistral", "Qwen2", "Qwen3"};
    int a = gpt_config(m)->arch;
    return a >= 0 && a < ARCH_COUNT ? names[a] : "retort";
}

/* Where a tensor's elements start in the backend's parameter buffer (the
 * model treats the buffer as bytes of its compute type). */
static float *param_ptr(GPT *m, const ParamInfo *p) {
    return (float *)((char *)gpt_params(m) + p->offset * gpt_backend(m)->act_size);
}

/* ------------------------------------------------------- saving */

#define HF_WEIGHTS "model.safetensors"
#define HF_INDEX "model.safetensors.index.json"

typedef struct {
    GPT *m;
    const int *table;  /* file tensor -> table index */
    StDtype dtype;
    float *scratch;    /* the largest tensor, fp32 (bf16/fp16 saves) */
} SaveCtx;

/* One tensor from the backend into dst, in the file's dtype. */
static int fill_tensor(void *ctx, int i, void *dst) {
    SaveCtx *c = ctx;
    const ParamInfo *p = gpt_tensor(c->m, c->table[i]);
    const Backend *be = gpt_backend(c->m);
    if (c->dtype == ST_F32) {
        be->download_f32(dst, param_ptr(c->m, p), p->numel);
        return 0;
    }
    be->download_f32(c->scratch, param_ptr(c->m, p), p->numel);
    uint8_t *out = dst; /* little-endian, possibly unaligned for uint16_t */
    for (size_t k = 0; k < p->numel; k++) {
        uint16_t h = c->dtype == ST_BF16 ? st_f32_to_bf16(c->scratch[k]) : st_f32_to_f16(c->scratch[k]);
        out[2 * k] = (uint8_t)h;
        out[2 * k + 1] = (uint8_t)(h >> 8);
    }
    return 0;
}

/* "model-00002-of-00005.safetensors" -> 1 (its name is a shard file's), else 0. */
static int is_shard_name(const char *name) {
    int a, b, end = 0;
    return sscanf(name, "model-%5d-of-%5d.safetensors%n", &a, &b, &end) == 2 &&
           (size_t)end == strlen(name) && strlen(name) == strlen("model-00001-of-00001.safetensors");
}

/* Removes the weight files of an earlier save in dir that this one did not
 * write (a single file after shards, shards of another count), so transformers
 * and retort find only the new ones. */
static int remove_stale_weights(const char *dir, int n_shards) {
    char path[4096];
    if (n_shards > 1) {
        if (path_join(path, sizeof path, dir, HF_WEIGHTS) != 0) return -1;
        if (unlink(path) != 0 && errno != ENOENT)
            return err_set("cannot remove the stale %s: %s", path, strerror(errno));
    } else {
        if (path_join(path, sizeof path, dir, HF_INDEX) != 0) return -1;
        if (unlink(path) != 0 && errno != ENOENT)
            return err_set("cannot remove the stale %s: %s", path, strerror(errno));
    }
    DIR *d = opendir(dir);
    if (!d) return err_set("cannot read %s: %s", dir, strerror(errno));
    char ours[64];
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!is_shard_name(e->d_name)) continue;
        int k, of;
        sscanf(e->d_name, "model-%5d-of-%5d", &k, &of);
        snprintf(ours, sizeof ours, "model-%05d-of-%05d.safetensors", k, n_shards);
        if (n_shards > 1 && of == n_shards && k >= 1 && k <= n_shards && !strcmp(ours, e->d_name))
            continue;
        if (path_join(path, sizeof path, dir, e->d_name) != 0) rc = -1;
        else if (unlink(path) != 0 && errno != ENOENT)
            rc = err_set("cannot remove the stale %s: %s", path, strerror(errno));
    }
    closedir(d);
    return rc;
}

/* The dtype the weights of source_dir are in (HF_SAVE_SOURCE). */
static StDtype source_dtype(const char *source_dir) {
    char name[64], path[4096];
    if (!source_dir || !source_dir[0] || path_join(path, sizeof path, source_dir, "config.json") ||
        !path_exists(path) || hf_config_dtype(source_dir, name, sizeof name) != 0)
        return ST_F32;
    if (!strcmp(name, "bfloat16")) return ST_BF16;
    if (!strcmp(name, "float16")) return ST_F16;
    return ST_F32; /* float32, none named, or a dtype retort does not write (float64) */
}

static int write_index(const char *dir, const StTensor *t, const int *shard_of, int count,
                       int n_shards, uint64_t total_bytes, uint64_t total_params) {
    json_t *root = json_object(), *meta = json_object(), *map = json_object();
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total_bytes));
    json_object_set_new(meta, "total_parameters", json_integer((json_int_t)total_params));
    json_object_set_new(root, "metadata", meta);
    for (int i = 0; i < count; i++) {
        char file[64];
        snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", shard_of[i] + 1, n_shards);
        json_object_set_new(map, t[i].name, json_string(file));
    }
    json_object_set_new(root, "weight_map", map);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(root);
    char path[4096];
    int rc = path_join(path, sizeof path, dir, HF_INDEX);
    if (rc == 0) {
        size_t n = strlen(text);
        text = xrealloc(text, n + 2);
        text[n] = '\n';
        rc = write_file_atomic(path, text, n + 1);
    }
    free(text);
    return rc;
}

int model_save_hf_ex(GPT *m, const char *dir, const HfSaveOptions *opts) {
    HfSaveOptions o = opts ? *opts : (HfSaveOptions){0};
    uint64_t max_shard = o.max_shard_bytes ? o.max_shard_bytes : HF_DEFAULT_MAX_SHARD_BYTES;
    StDtype dtype = o.dtype == HF_SAVE_BF16     ? ST_BF16
                    : o.dtype == HF_SAVE_F16    ? ST_F16
                    : o.dtype == HF_SAVE_SOURCE ? source_dtype(o.source_dir)
                                                : ST_F32;
    int n = gpt_num_tensors(m);
    StTensor *t = xcalloc((size_t)n + 1, sizeof(StTensor));
    int *table = xcalloc((size_t)n + 1, sizeof(int));
    int *shard_of = xcalloc((size_t)n + 1, sizeof(int));
    char (*names)[GPT_PARAM_NAME_LEN + 16] = xcalloc((size_t)n + 1, sizeof *names);
    int count = 0, n_shards = 0;
    size_t largest = 1;
    uint64_t shard_bytes = 0, total_bytes = 0, total_params = 0;
    for (int i = 0; i < n; i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (p->lora) continue; /* adapters go to adapter_model.safetensors (model/lora.h) */
        int j = count++;
        checkpoint_key(m, p, names[j], sizeof names[j]);
        t[j] = (StTensor){.name = names[j], .dtype = dtype, .ndim = p->ndim,
                          .shape = {p->shape[0], p->shape[1]}};
        table[j] = i;
        if (p->numel > largest) largest = p->numel;
        /* transformers' split_torch_state_dict_into_shards: a new shard when
         * this tensor would tip the current one over the limit */
        uint64_t bytes = (uint64_t)p->numel * st_dtype_size(dtype);
        if (n_shards == 0 || (shard_bytes > 0 && shard_bytes + bytes > max_shard)) {
            n_shards++;
            shard_bytes = 0;
        }
        shard_of[j] = n_shards - 1;
        shard_bytes += bytes;
        total_bytes += bytes;
        total_params += p->numel;
    }
    SaveCtx ctx = {.m = m, .table = table, .dtype = dtype,
                   .scratch = dtype == ST_F32 ? NULL : xmalloc(largest * sizeof(float))};
    static const char *const meta[] = {"format", "pt", NULL};
    char path[4096];
    int rc = 0;
    if (n_shards <= 1) {
        rc = path_join(path, sizeof path, dir, HF_WEIGHTS);
        if (rc == 0) rc = safetensors_write_fill(path, t, count, meta, fill_tensor, &ctx);
    } else {
        for (int s = 0, first = 0; s < n_shards && rc == 0; s++) {
            int last = first;
            while (last < count && shard_of[last] == s) last++;
            char file[64];
            snprintf(file, sizeof file, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
            SaveCtx part = ctx;
            part.table = table + first;
            rc = path_join(path, sizeof path, dir, file);
            if (rc == 0)
                rc = safetensors_write_fill(path, t + first, last - first, meta, fill_tensor, &part);
            first = last;
        }
        if (rc == 0) rc = write_index(dir, t, shard_of, count, n_shards, total_bytes, total_params);
    }
    if (rc == 0) rc = remove_stale_weights(dir, n_shards);
    if (rc == 0) {
        HfConfigWrite w = {.source_dir = o.source_dir,
                           .dtype = dtype == ST_BF16 ? "bfloat16" : dtype == ST_F16 ? "float16"
                                                                                    : "float32"};
        rc = hf_config_write_ex(dir, gpt_config(m), &w);
    }
    if (rc == 0) rc = model_hf_carry_files(dir, o.source_dir);
    free(ctx.scratch);
    free(names);
    free(shard_of);
    free(table);
    free(t);
    return rc;
}

int model_save_hf(GPT *m, const char *dir) { return model_save_hf_ex(m, dir, NULL); }

static int copy_file(const char *from, const char *to) {
    size_t len;
    char *data = read_file(from, &len);
    if (!data) return -1;
    int rc = write_file_atomic(to, data, len);
    free(data);
    return rc;
}

int model_hf_carry_files(const char *dir, const char *source_dir) {
    static const char *const files[] = {"generation_config.json", NULL};
    if (!source_dir || !source_dir[0] || !strcmp(source_dir, dir)) return 0;
    char from[4096], to[4096];
    for (int i = 0; files[i]; i++) {
        if (path_join(from, sizeof from, source_dir, files[i]) != 0 ||
            path_join(to, sizeof to, dir, files[i]) != 0)
            return -1;
        if (path_exists(from) && copy_file(from, to) != 0) return -1;
    }
    return 0;
}

/* ------------------------------------------------------- loading */

/* The safetensors files of a checkpoint: model.safetensors, or the shards
 * model.safetensors.index.json names. */
typedef struct {
    int n;
    SafeTensorsFile **files;
    char where[4096]; /* the file messages name: model.safetensors or the index */
} Weights;

static void weights_close(Weights *w) {
    for (int i = 0; i < w->n; i++) safetensors_close(w->files[i]);
    free(w->files);
    w->files = NULL;
    w->n = 0;
}

static const StTensor *weights_find(const Weights *w, const char *key, int *file) {
    for (int i = 0; i < w->n; i++) {
        const StTensor *t = safetensors_find(w->files[i], key);
        if (t) {
            if (file) *file = i;
            return t;
        }
    }
    return NULL;
}

static int open_shards(Weights *w, const char *dir, const char *index) {
    json_error_t jerr;
    json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return err_set("%s: invalid JSON at line %d: %s", index, jerr.line, jerr.text);
    json_t *map = json_object_get(root, "weight_map");
    int rc = 0;
    if (!json_is_object(map) || json_object_size(map) == 0)
        rc = err_set("%s: no \"weight_map\" object of tensor names and shard files", index);
    const char *key;
    json_t *file;
    /* open each shard once, in the order the map first names it */
    json_t *opened = json_object();
    json_object_foreach(map, key, file) {
        if (rc != 0) break;
        const char *name = json_string_value(file);
        if (!name || !*name || strchr(name, '/') || name[0] == '.')
            rc = err_set("%s: weight_map[\"%s\"] is not the name of a file beside it", index, key);
        else if (!json_object_get(opened, name)) {
            char path[4096];
            SafeTensorsFile *f = NULL;
            if (path_join(path, sizeof path, dir, name) != 0 || !(f = safetensors_open(path))) {
                rc = -1;
                break;
            }
            w->files = xrealloc(w->files, (size_t)(w->n + 1) * sizeof *w->files);
            json_object_set_new(opened, name, json_integer(w->n));
            w->files[w->n++] = f;
        }
    }
    /* every tensor is where the index says */
    json_object_foreach(map, key, file) {
        if (rc != 0) break;
        json_int_t i = json_integer_value(json_object_get(opened, json_string_value(file)));
        if (!safetensors_find(w->files[i], key))
            rc = err_set("%s: the index puts tensor '%s' in %s, which does not hold it", index, key,
                         json_string_value(file));
    }
    json_decref(opened);
    json_decref(root);
    return rc;
}

static int weights_open(Weights *w, const char *dir) {
    char path[4096];
    memset(w, 0, sizeof *w);
    if (path_join(path, sizeof path, dir, HF_WEIGHTS) != 0) return -1;
    if (path_exists(path)) {
        snprintf(w->where, sizeof w->where, "%s", path);
        w->files = xmalloc(sizeof *w->files);
        if (!(w->files[0] = safetensors_open(path))) return -1;
        w->n = 1;
        return 0;
    }
    if (path_join(path, sizeof path, dir, HF_INDEX) != 0) return -1;
    if (path_exists(path)) {
        snprintf(w->where, sizeof w->where, "%s", path);
        if (open_shards(w, dir, path) == 0) return 0;
        weights_close(w);
        return -1;
    }
    char bin[4096];
    if (path_join(bin, sizeof bin, dir, "pytorch_model.bin") == 0 && path_exists(bin))
        return err_set("%s holds pytorch_model.bin and no model.safetensors; retort reads "
                       "safetensors: convert it (transformers: model.save_pretrained(dir, "
                       "safe_serialization=True))", dir);
    return err_set("cannot open %s/%s: no such file (nor %s)", dir, HF_WEIGHTS, HF_INDEX);
}

/* Elements converted per upload: bounds the host buffer whatever the tensor. */
#define LOAD_CHUNK ((size_t)1 << 22)

int model_load_weights(GPT *m, const char *dir) {
    Weights w;
    if (weights_open(&w, dir) != 0) return -1;
    const Backend *be = gpt_backend(m);
    int n = gpt_num_tensors(m);
    float *buf = xmalloc(LOAD_CHUNK * sizeof(float));
    int rc = 0;
    /* tensor by tensor: convert a slice into buf, upload it to its place in
     * the parameters, then let the file's pages go, so loading holds the
     * model's own copy plus about one tensor of the file; LoRA adapters and
     * the padded vocabulary rows are not touched */
    for (int i = 0; i < n && rc == 0; i++) {
        const ParamInfo *p = gpt_tensor(m, i);
        if (p->lora) continue;
        char key[GPT_PARAM_NAME_LEN + 16];
        checkpoint_key(m, p, key, sizeof key);
        int file = 0;
        const StTensor *t = weights_find(&w, key, &file);
        if (!t && gpt_config(m)->arch == ARCH_GPT2) t = weights_find(&w, p->name, &file);
        if (!t && !strncmp(p->name, "model.", 6)) t = weights_find(&w, p->name + 6, &file);
        if (!t) {
            rc = err_set("%s: tensor '%s' is missing (a %s checkpoint of %d layers with this "
                         "config.json needs it)", w.where, key, family_name(m),
                         gpt_config(m)->n_layer);
            break;
        }
        int ok = t->ndim == p->ndim && t->shape[0] == p->shape[0] &&
                 (p->ndim == 1 || t->shape[1] == p->shape[1]);
        if (!ok) {
            rc = err_set("%s: tensor '%s' has shape [%lld%s%lld] but the model (config.json) "
                         "expects [%d%s%d]",
                         safetensors_path(w.files[file]), t->name, (long long)t->shape[0],
                         t->ndim > 1 ? ", " : "", t->ndim > 1 ? (long long)t->shape[1] : 0LL,
                         p->shape[0], p->ndim > 1 ? ", " : "", p->ndim > 1 ? p->shape[1] : 0);
            break;
        }
        float *dst = param_ptr(m, p);
        for (size_t at = 0; at < p->numel && rc == 0; at += LOAD_CHUNK) {
            size_t k = p->numel - at < LOAD_CHUNK ? p->numel - at : LOAD_CHUNK;
            rc = safetensors_read_f32_part(w.files[file], t, at, buf, k);
            if (rc == 0) be->upload_f32((float *)((char *)dst + at * be->act_size), buf, k);
        }
        safetensors_release(w.files[file], t);
    }
    /* refuse tensors we would silently drop, and a tensor in two shards */
    for (int f = 0; f < w.n && rc == 0; f++)
        for (int i = 0; i < safetensors_count(w.files[f]) && rc == 0; i++) {
            const char *key = safetensors_get(w.files[f], i)->name;
            int first = f;
            weights_find(&w, key, &first);
            if (first != f)
                rc = err_set("%s: tensor '%s' is in both %s and %s", w.where, key,
                             safetensors_path(w.files[first]), safetensors_path(w.files[f]));
            else if (!tensor_of_key(m, key) && !is_ignored_key(m, key))
                rc = err_set("%s: unexpected tensor '%s' (not part of a %s model with this "
                             "config.json)", safetensors_path(w.files[f]), key, family_name(m));
        }
    if (rc == 0) be->synchronize();
    free(buf);
    weights_close(&w);
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
