/* train/objectives/objective.c — what every method may use: the data's
 * tokenizer against the model's, loading a frozen second model and
 * accumulating metrics (objective.h). */
#include "train/objectives/objective.h"

#include <stdio.h>

#include "data/tokenizer.h"
#include "model/model_io.h"

int objective_check_tokenizer(const TrainEnv *env, const char *path, const char *tokenizer,
                              int vocab_size) {
    RunTokenizer local = {0}, *run = env->tokenizer ? env->tokenizer : &local;
    const char *init = env->cfg->model.init;
    const GPTConfig *g = gpt_config(env->model);
    if (!run->settled) {
        if (init[0]) {
            if (model_tokenizer_name(init, run->name, sizeof run->name) != 0) return -1;
            snprintf(run->source, sizeof run->source, "model.init %s", init);
        }
        run->settled = 1;
    }
    TokenizerKind data = tokenizer_kind(tokenizer), own = tokenizer_kind(run->name);
    if (tokenizer_same(tokenizer, run->name) == 0)
        return err_set("%s was built with tokenizer %s, but %s uses %s; build the data with "
                       "that tokenizer (retort data build --tokenizer), or start from a model "
                       "trained with %s",
                       path, tokenizer, run->source, run->name, tokenizer);
    if (vocab_size > g->vocab_size)
        return err_set("%s: dataset vocab_size %d exceeds the model's %d%s%s; token ids would be "
                       "out of range: build the data with the model's tokenizer",
                       path, vocab_size, g->vocab_size, init[0] ? ", model.init " : "", init);
    if (own != TOKENIZER_UNKNOWN) {
        if (data == TOKENIZER_UNKNOWN && env->rank == 0 && !env->quiet)
            fprintf(stderr, "warning: %s names no known tokenizer ('%s'), so it cannot be "
                            "checked against %s's %s\n",
                    path, tokenizer, run->source, run->name);
        return 0;
    }
    if (data == TOKENIZER_BYTES && init[0] && g->vocab_size != 257)
        return err_set("%s was built with the byte tokenizer (257 ids), but model.init %s has "
                       "vocab_size %d and names no tokenizer (no tokenizer files, no %s), so it "
                       "was not trained on bytes; build the data with the model's tokenizer "
                       "(retort data build --tokenizer), or put its tokenizer.json in %s",
                       path, init, g->vocab_size, MODEL_RECORD_FILE, init);
    if (data != TOKENIZER_UNKNOWN) { /* the run trains with the data's tokenizer from here on */
        snprintf(run->name, sizeof run->name, "%s", tokenizer);
        snprintf(run->source, sizeof run->source, "%s", path);
    }
    return 0;
}

GPT *objective_load_frozen(const TrainEnv *env, const char *dir, const char *what) {
    char own[256];
    if (model_tokenizer_name(dir, own, sizeof own) != 0) return NULL;
    if (env->tokenizer && tokenizer_same(own, env->tokenizer->name) == 0) {
        err_set("%s %s was trained with tokenizer %s, but %s uses %s; the %s must share the "
                "student's tokenizer",
                what, dir, own, env->tokenizer->source, env->tokenizer->name, what);
        return NULL;
    }
    GPT *m = model_load_hf(dir, env->be);
    if (!m) return NULL;
    gpt_set_logits_chunk(m, env->cfg->train.logits_chunk_rows);
    /* never trained, so nothing is recomputed: block mode only keeps its
     * activations to one block's worth */
    gpt_set_recompute(m, GPT_RECOMPUTE_BLOCK);
    const GPTConfig *a = gpt_config(m), *b = gpt_config(env->model);
    if (a->vocab_size != b->vocab_size || gpt_context_len(a) < env->T) {
        err_set("%s %s: vocab_size %d and n_positions %d; the student has vocab_size %d and "
                "trains on seq_len %d (the %s needs the same vocabulary and at least that "
                "context)",
                what, dir, a->vocab_size, gpt_context_len(a), b->vocab_size, env->T, what);
        gpt_free(m);
        return NULL;
    }
    gpt_set_trainable(m, (const char *const[]){"*"}, 1, NULL, 0);
    gpt_set_train_mode(m, 0);
    return m;
}

const ObjectiveMetric *objective_metrics(const Objective *o, const void *self, int *n_metrics,
                                         int *n_eval_metrics) {
    if (o->run_metrics) return o->run_metrics(self, n_metrics, n_eval_metrics);
    *n_metrics = o->n_metrics;
    *n_eval_metrics = o->n_eval_metrics;
    return o->metrics;
}

void objective_metrics_add(double *sum, const double *m, double w, int n) {
    for (int k = 0; k < n; k++) sum[k] += w * m[k];
}
