/* model/model_io.c — GPT weights to and from Hugging Face checkpoint files.
 *
 * Our parameter table already uses HF's names and Conv1D (in, out) layout, so
 * saving is one safetensors tensor per table entry and loading is a name
 * lookup with the two key styles HF has used ("h.0..." in GPT2Model files,
 * "transformer.h.0..." in GPT2LMHeadModel files). */
#include "model/model_io.h"

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
