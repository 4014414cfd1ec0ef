/* train/objectives/objective.c — what every method may use: loading a frozen
 * second model and accumulating metrics (objective.h). */
#include "train/objectives/objective.h"

#include "model/model_io.h"

GPT *objective_load_frozen(const TrainEnv *env, const char *dir, const char *what) {
    GPT *m = model_load_hf(dir, env->be);
    if (!m) return NULL;
    gpt_set_logits_chunk(m, env->cfg->train.logits_chunk_rows);
    const GPTConfig *a = gpt_config(m), *b = gpt_config(env->model);
    if (a->vocab_size != b->vocab_size || a->n_positions < env->T) {
        err_set("%s %s: vocab_size %d and n_positions %d; the student has vocab_size %d and "
                "trains on seq_len %d (the %s needs the same vocabulary and at least that "
                "context)",
                what, dir, a->vocab_size, a->n_positions, b->vocab_size, env->T, what);
        gpt_free(m);
        return NULL;
    }
    gpt_set_trainable(m, (const char *const[]){"*"}, 1, NULL, 0);
    gpt_set_train_mode(m, 0);
    return m;
}

void objective_metrics_add(double *sum, const double *m, double w, int n) {
    for (int k = 0; k < n; k++) sum[k] += w * m[k];
}
