/* train/objectives/seq_batches.c — sequence data for lm and kd (see
 * seq_batches.h). */
#include "train/objectives/seq_batches.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "train/dist.h"
#include "train/objectives/lm.h"

/* data.role: one role's examples (GLPFT local stages), the validation split
 * taken from the end of that role's examples. */
static int open_role(SeqBatches *d, const TrainEnv *env) {
    const Config *c = env->cfg;
    int64_t *sel = NULL, n = 0, n_val = 0;
    if (d->train_ds[0].schema == SCHEMA_LM)
        return err_set("%s: data.role needs an sft or kd file with a role column",
                       c->data.train);
    if (dataset_role_items(&d->train_ds[0], c->data.role, &sel, &n) != 0) return -1;
    int rc = 0;
    if (c->data.val[0]) {
        rc = err_set("data.role with a separate data.val file: give the validation file's "
                     "examples of that role a file of their own, or use data.val_fraction");
    } else if (c->data.val_fraction > 0) {
        n_val = (int64_t)(n * c->data.val_fraction);
        if (n_val < 1) n_val = 1;
        if (n_val >= n)
            rc = err_set("%s: role '%s' has %lld examples, too few to hold out "
                         "data.val_fraction=%g", c->data.train, c->data.role, (long long)n,
                         c->data.val_fraction);
        else if (loader_init_subset(&d->val_dl, &d->train_ds[0], env->T, 0, 0, sel + n - n_val,
                                    n_val) == 0)
            d->have_val = 1;
        else
            rc = -1;
    }
    if (rc == 0)
        rc = loader_init_subset(&d->train_dl, &d->train_ds[0], env->T, (uint64_t)c->train.seed,
                                c->data.shuffle, sel, n - n_val);
    free(sel);
    return rc;
}

/* data.stream: a file read on demand (true, or auto and larger than
 * DATASET_STREAM_AUTO_BYTES) or loaded whole (false, or auto and smaller). */
static int open_data(const Config *c, Dataset *ds, const char *path) {
    int stream = !strcmp(c->data.stream, "true");
    if (!strcmp(c->data.stream, "auto")) {
        stream = dataset_stream_auto(path);
        if (stream < 0) return -1;
    }
    return stream ? dataset_open_stream(ds, path) : dataset_open(ds, path);
}

static int check_vocab(const Config *c, const Dataset *ds) {
    if (!c->model.init[0] && ds->vocab_size > c->model.vocab_size)
        return err_set("%s: dataset vocab_size %d exceeds model.vocab_size %d; token ids would "
                       "be out of range (build the data with the model's tokenizer or raise "
                       "model.vocab_size)",
                       ds->path, ds->vocab_size, c->model.vocab_size);
    return 0;
}

/* The files of a mixture must be one kind of data in one tokenizer. */
static int check_mix_pair(const Dataset *a, const Dataset *b) {
    if (a->schema != b->schema)
        return err_set("data.mix: %s is a %s file but %s is a %s file; every file of a mixture "
                       "has one schema", a->path, schema_name(a->schema), b->path,
                       schema_name(b->schema));
    int same = tokenizer_same(a->tokenizer, b->tokenizer);
    if (same == 0 || (same < 0 && strcmp(a->tokenizer, b->tokenizer)) ||
        a->vocab_size != b->vocab_size)
        return err_set("data.mix: %s was built with tokenizer %s (vocab_size %d) but %s with %s "
                       "(vocab_size %d); build every file of a mixture with one tokenizer",
                       a->path, a->tokenizer, a->vocab_size, b->path, b->tokenizer,
                       b->vocab_size);
    if (a->topk != b->topk)
        return err_set("data.mix: %s has %d teacher log-probs per token but %s has %d; the "
                       "files of a mixture need the same teacher_topk width",
                       a->path, a->topk, b->path, b->topk);
    return 0;
}

static int open_mix(SeqBatches *d, const TrainEnv *env) {
    const Config *c = env->cfg;
    DataMix mix;
    if (config_data_mix(c, &mix) != 0) return -1;
    const Dataset *ds[CFG_MAX_MIX];
    int64_t counts[CFG_MAX_MIX];
    for (int s = 0; s < mix.n; s++) {
        if (open_data(c, &d->train_ds[s], mix.path[s]) != 0) return -1;
        d->n_train = s + 1;
        if (check_vocab(c, &d->train_ds[s]) != 0) return -1;
        if (s > 0 && check_mix_pair(&d->train_ds[0], &d->train_ds[s]) != 0) return -1;
        ds[s] = &d->train_ds[s];
        counts[s] = dataset_num_items(ds[s], env->T);
        if (c->data.val[0] || c->data.val_fraction <= 0) continue;
        /* data.val_fraction: the tail of every file, as for one file */
        int64_t n_val = (int64_t)(counts[s] * c->data.val_fraction);
        if (n_val < 1) n_val = 1;
        if (n_val >= counts[s])
            return err_set("%s: %lld items at seq_len %d are too few to hold out "
                           "data.val_fraction=%g for validation",
                           mix.path[s], (long long)counts[s], env->T, c->data.val_fraction);
        counts[s] -= n_val;
        if (loader_init(&d->val_mix[s], ds[s], env->T, 0, 0, counts[s], n_val) != 0) return -1;
        d->n_val_mix = s + 1;
        d->have_val = 1;
    }
    if (mix_init(&d->mix, ds, mix.weight, counts, mix.n, env->T, (uint64_t)c->train.seed,
                 c->data.shuffle) != 0)
        return -1;
    d->use_mix = 1;
    return 0;
}

static int open_loaders(SeqBatches *d, const TrainEnv *env) {
    const Config *c = env->cfg;
    int T = env->T;
    if (c->data.mix[0]) {
        if (open_mix(d, env) != 0) return -1;
    } else {
        if (open_data(c, &d->train_ds[0], c->data.train) != 0) return -1;
        d->n_train = 1;
        if (check_vocab(c, &d->train_ds[0]) != 0) return -1;
        if (c->data.role[0]) return open_role(d, env);
    }
    int64_t items = d->use_mix ? 0 : dataset_num_items(&d->train_ds[0], T);
    int64_t n_val = 0;
    if (c->data.val[0]) {
        if (open_data(c, &d->val_ds, c->data.val) != 0) return -1;
        d->have_val_ds = 1;
        if (!c->model.init[0] && d->val_ds.vocab_size > c->model.vocab_size)
            return err_set("%s: dataset vocab_size %d exceeds model.vocab_size %d", c->data.val,
                           d->val_ds.vocab_size, c->model.vocab_size);
        if (loader_init(&d->val_dl, &d->val_ds, T, 0, 0, 0, dataset_num_items(&d->val_ds, T)) !=
            0)
            return -1;
        d->have_val = 1;
    } else if (c->data.val_fraction > 0 && !d->use_mix) {
        n_val = (int64_t)(items * c->data.val_fraction);
        if (n_val < 1) n_val = 1;
        if (n_val >= items)
            return err_set("%s: %lld items at seq_len %d are too few to hold out "
                           "data.val_fraction=%g for validation",
                           c->data.train, (long long)items, T, c->data.val_fraction);
        if (loader_init(&d->val_dl, &d->train_ds[0], T, 0, 0, items - n_val, n_val) != 0)
            return -1;
        d->have_val = 1;
    }
    if (d->use_mix) return 0;
    return loader_init(&d->train_dl, &d->train_ds[0], T, (uint64_t)c->train.seed,
                       c->data.shuffle, 0, items - n_val);
}

/* The file's task ids -> indices into tw, by name. Every task of the file
 * must be in task_weights. */
static int map_tasks(const SeqBatches *d, const Dataset *ds, signed char *map) {
    const TaskWeights *tw = &d->tw;
    memset(map, -1, 256);
    if (!ds->has_task)
        return err_set("%s has no task column, so objective.task_weights has nothing to weigh; "
                       "build it with `retort data build --task-field NAME` (sft or kd), or "
                       "leave objective.task_weights unset",
                       ds->path);
    if (ds->n_tasks == 0)
        return err_set("%s has a task column but no `tasks` attribute naming its ids, so "
                       "objective.task_weights cannot match them; rebuild it with `retort data "
                       "build --task-field NAME`",
                       ds->path);
    for (int f = 0; f < ds->n_tasks; f++) {
        for (int t = 0; t < tw->n; t++)
            if (!strcmp(ds->task_names[f], tw->name[t])) map[f] = (signed char)t;
        if (map[f] < 0) {
            char listed[CFG_MAX_TASKS * (CFG_TASK_NAME + 2)] = "";
            for (int t = 0; t < tw->n; t++)
                snprintf(listed + strlen(listed), sizeof listed - strlen(listed), "%s%s",
                         t ? ", " : "", tw->name[t]);
            return err_set("%s has task '%s', which objective.task_weights (%s) does not list; "
                           "give it a weight (0 to train nothing on it)",
                           ds->path, ds->task_names[f], listed);
        }
    }
    return 0;
}

/* objective.task_weights against the files: each file's tasks mapped, and
 * each listed task present in some training file. */
static int open_tasks(SeqBatches *d, const TrainEnv *env) {
    if (config_task_weights(env->cfg, &d->tw) != 0) return -1;
    if (d->tw.n == 0) return 0;
    if (d->train_ds[0].schema == SCHEMA_LM)
        return err_set("%s is an lm file (documents cut into windows, no task column); "
                       "objective.task_weights needs sft or kd examples with a task column",
                       d->train_ds[0].path);
    for (int s = 0; s < d->n_train; s++)
        if (map_tasks(d, &d->train_ds[s], d->task_map[s]) != 0) return -1;
    if (d->have_val_ds && map_tasks(d, &d->val_ds, d->task_map[CFG_MAX_MIX]) != 0) return -1;
    for (int t = 0; t < d->tw.n; t++) {
        int found = 0;
        for (int s = 0; s < d->n_train; s++)
            for (int f = 0; f < d->train_ds[s].n_tasks; f++) found |= d->task_map[s][f] == t;
        if (!found) {
            char names[1024] = "";
            for (int s = 0; s < d->n_train; s++)
                for (int f = 0; f < d->train_ds[s].n_tasks; f++)
                    snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                             names[0] ? ", " : "", d->train_ds[s].task_names[f]);
            return err_set("objective.task_weights names task '%s', but %s%s %s; the tasks "
                           "there are: %s",
                           d->tw.name[t], d->n_train > 1 ? "no file of data.mix has it (" : "",
                           d->n_train > 1 ? "data.mix" : d->train_ds[0].path,
                           d->n_train > 1 ? ")" : "has none", names);
        }
    }
    for (int t = 0; t < d->tw.n; t++)
        snprintf(d->metric_names[t], sizeof d->metric_names[t], "loss/%s", d->tw.name[t]);
    return 0;
}

int seq_batches_open(SeqBatches *d, const TrainEnv *env) {
    memset(d, 0, sizeof *d);
    size_t N = (size_t)env->B * env->T, GN = N * env->world, GB = (size_t)env->world * env->B;
    d->inputs = xmalloc((size_t)env->A * GN * sizeof(int));
    d->targets = xmalloc((size_t)env->A * GN * sizeof(int));
    d->items = xmalloc((size_t)env->A * GB * sizeof(int64_t));
    d->sources = xcalloc((size_t)env->A * GB, sizeof(int));
    d->tasks = xmalloc((size_t)env->A * GB * sizeof(int));
    d->logp = xmalloc(N * sizeof(float));
    d->g = xmalloc(N * sizeof(float));
    if (open_loaders(d, env) != 0) return -1;
    if (env->cfg->data.pack) {
        if (packer_init(&d->packer, &d->train_dl) != 0) return -1;
        d->pack = 1;
        d->doc_start = xmalloc((size_t)env->A * GN * sizeof(int));
        d->token_index = xmalloc((size_t)env->A * GN * sizeof(int64_t));
    }
    return open_tasks(d, env);
}

int seq_batches_check_tokenizer(const SeqBatches *d, const TrainEnv *env) {
    for (int s = 0; s < d->n_train; s++)
        if (objective_check_tokenizer(env, d->train_ds[s].path, d->train_ds[s].tokenizer,
                                      d->train_ds[s].vocab_size) != 0)
            return -1;
    return d->have_val_ds ? objective_check_tokenizer(env, env->cfg->data.val,
                                                      d->val_ds.tokenizer, d->val_ds.vocab_size)
                          : 0;
}

static void describe_loader(const char *what, const DataLoader *dl) {
    int64_t cut = loader_count_truncated(dl);
    if (cut < 0) {
        printf("%s: %lld examples (how many are longer than a row is unknown: %s)\n", what,
               (long long)dl->count, err_msg());
        return;
    }
    printf("%s: %lld of %lld examples truncated to the %d tokens of a row (their end is cut), "
           "none dropped\n",
           what, (long long)cut, (long long)dl->count, dl->T + 1);
}

void seq_batches_describe(const SeqBatches *d, const TrainEnv *env) {
    const Dataset *ds = &d->train_ds[0];
    if (d->use_mix) {
        printf("data.mix: %d files drawn as one stream, one epoch = %lld examples:\n", d->n_train,
               (long long)mix_items(&d->mix));
        for (int s = 0; s < d->n_train; s++)
            printf("  %s: %lld items, share %.4g\n", d->train_ds[s].path,
                   (long long)d->mix.src[s].count,
                   d->mix.cum[s] - (s ? d->mix.cum[s - 1] : 0.0));
        for (int s = 0; s < d->n_train && ds->schema != SCHEMA_LM; s++)
            describe_loader(d->train_ds[s].path, &d->mix.src[s]);
    } else if (ds->schema == SCHEMA_LM) {
        int64_t windows = dataset_num_items(ds, env->T);
        printf("lm data: %lld windows of %d tokens; the last %lld tokens of the stream fill no "
               "window and are not trained on\n",
               (long long)windows, env->T + 1,
               (long long)(ds->n_tokens - windows * (int64_t)env->T - (windows > 0)));
    } else {
        describe_loader("training examples", &d->train_dl);
    }
    if (d->pack)
        printf("data.pack: examples packed first-fit into each micro-batch of %d rows of %d "
               "tokens, attention within each example, positions restarting per example\n",
               env->world * env->B, env->T);
    for (int s = 0; s < d->n_train; s++)
        if (d->train_ds[s].stream)
            printf("data.stream: %s is read on demand (rows by HDF5 hyperslab, %u MiB of chunk "
                   "cache per column, the next batch read ahead), in a stateless shuffled "
                   "order\n",
                   d->train_ds[s].path, DATASET_STREAM_CACHE >> 20);
    for (int s = 0; s < d->n_val_mix && ds->schema != SCHEMA_LM; s++)
        describe_loader("validation examples", &d->val_mix[s]);
    if (d->have_val && !d->n_val_mix && ds->schema != SCHEMA_LM)
        describe_loader("validation examples", &d->val_dl);
    if (d->tw.n) {
        printf("task weights:");
        for (int t = 0; t < d->tw.n; t++)
            printf("%s %s %g", t ? "," : "", d->tw.name[t], d->tw.weight[t]);
        printf(" (each task's loss is its mean over its target tokens in the step)\n");
    }
}

void seq_batches_close(SeqBatches *d) {
    if (d->pack) packer_free(&d->packer);
    free(d->doc_start);
    free(d->token_index);
    if (d->use_mix) mix_free(&d->mix);
    else loader_free(&d->train_dl);
    if (d->have_val && !d->n_val_mix) loader_free(&d->val_dl);
    for (int s = 0; s < d->n_val_mix; s++) loader_free(&d->val_mix[s]);
    for (int s = 0; s < d->n_train; s++) dataset_close(&d->train_ds[s]);
    if (d->have_val_ds) dataset_close(&d->val_ds);
    free(d->inputs);
    free(d->targets);
    free(d->items);
    free(d->sources);
    free(d->tasks);
    free(d->logp);
    free(d->g);
    memset(d, 0, sizeof *d);
}

int64_t seq_batches_items(const SeqBatches *d) {
    return d->use_mix ? mix_items(&d->mix) : d->train_dl.count;
}

void seq_batches_seek(SeqBatches *d, int64_t epoch, int64_t pos) {
    if (d->use_mix) mix_seek(&d->mix, epoch * mix_items(&d->mix) + pos, NULL);
    else if (d->pack) packer_seek(&d->packer, epoch, pos);
    else loader_seek(&d->train_dl, epoch, pos);
}

void seq_batches_position(const SeqBatches *d, int64_t *epoch, int64_t *pos) {
    if (d->use_mix) {
        *epoch = 0;
        *pos = d->mix.index;
    } else if (d->pack) {
        packer_position(&d->packer, epoch, pos);
    } else {
        *epoch = d->train_dl.epoch;
        *pos = d->train_dl.pos;
    }
}

json_t *seq_batches_save_position(const SeqBatches *d) {
    if (!d->use_mix) return NULL;
    int64_t consumed[CFG_MAX_MIX];
    mix_consumed(&d->mix, consumed);
    json_t *o = json_object(), *files = json_array();
    json_object_set_new(o, "mix_index", json_integer(d->mix.index));
    for (int s = 0; s < d->n_train; s++) {
        json_t *f = json_object();
        json_object_set_new(f, "path", json_string(d->train_ds[s].path));
        json_object_set_new(f, "consumed", json_integer(consumed[s]));
        json_object_set_new(f, "epoch", json_integer(d->mix.src[s].epoch));
        json_object_set_new(f, "pos", json_integer(d->mix.src[s].pos));
        json_array_append_new(files, f);
    }
    json_object_set_new(o, "mix_files", files);
    return o;
}

/* A checkpoint of a mixture: each file continues at its recorded position
 * (matched by path, so weights or files may change between save and resume;
 * a file the checkpoint does not name starts at its beginning). Without the
 * record, seek() has already replayed the stream to the global index. */
int seq_batches_load_position(SeqBatches *d, const json_t *detail) {
    if (!d->use_mix || !detail) return 0;
    json_t *index = json_object_get(detail, "mix_index"), *files = json_object_get(detail, "mix_files");
    if (!json_is_integer(index) || json_integer_value(index) < 0 || !json_is_array(files))
        return err_set("trainer.json: data.detail has no valid mix_index and mix_files");
    int64_t consumed[CFG_MAX_MIX] = {0};
    for (size_t i = 0; i < json_array_size(files); i++) {
        json_t *f = json_array_get(files, i), *p = json_object_get(f, "path"),
               *k = json_object_get(f, "consumed");
        if (!json_is_string(p) || !json_is_integer(k) || json_integer_value(k) < 0)
            return err_set("trainer.json: data.detail.mix_files[%zu] needs a path and a "
                           "consumed count >= 0", i);
        for (int s = 0; s < d->n_train; s++)
            if (!strcmp(d->train_ds[s].path, json_string_value(p)))
                consumed[s] = json_integer_value(k);
    }
    mix_seek(&d->mix, json_integer_value(index), consumed);
    return 0;
}

/* A streamed file that fails mid-run (a read error, a bad value the open
 * could not check) ends the job: every rank stops, with the reader's message
 * naming the file, the dataset and the index. */
static void data_failed(const TrainEnv *env) {
    fprintf(stderr, "retort train: error: rank %d: %s\n", env->rank, err_msg());
    dist_abort(1);
}

void seq_batches_draw(SeqBatches *d, const TrainEnv *env) {
    size_t GB = (size_t)env->world * env->B, GN = GB * env->T;
    /* streamed files: each rank reads only its own rows [rank B, rank B + B)
     * (in memory, every rank cuts every row, as it always has) */
    int stream = 0;
    for (int s = 0; s < d->n_train; s++) stream |= d->train_ds[s].stream != NULL;
    int first = stream ? env->rank * env->B : 0, n = stream ? env->B : (int)GB;
    for (int a = 0; a < env->A; a++) {
        int rc = 0;
        if (d->use_mix) {
            rc = mix_next_slice(&d->mix, (int)GB, first, n, d->inputs + a * GN,
                                d->targets + a * GN, d->sources + a * GB, d->items + a * GB);
        } else if (d->pack) {
            /* a row holds several items: none recorded; streamed or not, every
             * rank packs (and reads) the whole group, see data/pack.h */
            rc = packer_next(&d->packer, (int)GB, d->inputs + a * GN, d->targets + a * GN,
                             d->doc_start + a * GN, d->token_index + a * GN, NULL);
            for (size_t r = 0; r < GB; r++) d->items[a * GB + r] = -1;
        } else {
            rc = loader_next_slice(&d->train_dl, (int)GB, first, n, d->inputs + a * GN,
                                   d->targets + a * GN, d->items + a * GB);
        }
        if (rc != 0) data_failed(env);
    }
    /* each row's task, for the rows this rank read (the others stay -1) */
    for (int a = 0; a < env->A; a++)
        for (int b = 0; b < (int)GB; b++) {
            size_t r = (size_t)a * GB + (size_t)b;
            int id = 0;
            d->tasks[r] = -1;
            if (!d->tw.n || b < first || b >= first + n) continue;
            if (dataset_task_of(&d->train_ds[d->sources[r]], d->items[r], &id) != 0)
                data_failed(env);
            d->tasks[r] = d->task_map[d->sources[r]][id];
        }
}

const int64_t *seq_batches_token_index(const SeqBatches *d, const TrainEnv *env, int a) {
    if (!d->pack) return NULL;
    size_t N = (size_t)env->B * env->T;
    return d->token_index + (size_t)a * N * env->world + (size_t)env->rank * N;
}

void seq_batches_pack_model(const SeqBatches *d, const TrainEnv *env, int a, GPT *model) {
    if (!d->pack) return;
    if (gpt_set_packing(model, seq_batches_local(d, env, d->doc_start, a), env->B, env->T) !=
        0) {
        /* the packer's own layout: a bug, not bad data */
        fprintf(stderr, "retort: data.pack: %s\n", err_msg());
        exit(1);
    }
}

int *seq_batches_local(const SeqBatches *d, const TrainEnv *env, int *base, int a) {
    (void)d;
    size_t N = (size_t)env->B * env->T;
    return base + (size_t)a * N * env->world + (size_t)env->rank * N;
}

int *seq_batches_local_rows(const SeqBatches *d, const TrainEnv *env, int *base, int a) {
    (void)d;
    return base + (size_t)a * env->B * env->world + (size_t)env->rank * env->B;
}

double seq_batches_step_targets(const SeqBatches *d, const TrainEnv *env) {
    int64_t local = 0;
    for (int a = 0; a < env->A; a++)
        local += lm_count_targets(seq_batches_local(d, env, d->targets, a),
                                  (int64_t)env->B * env->T);
    return (double)dist_sum_i64(local);
}

void seq_batches_task_targets(const SeqBatches *d, const TrainEnv *env, double *D, double *coef) {
    int64_t local[CFG_MAX_TASKS] = {0};
    for (int a = 0; a < env->A; a++) {
        const int *tg = seq_batches_local(d, env, d->targets, a);
        const int *task = seq_batches_local_rows(d, env, d->tasks, a);
        for (int b = 0; b < env->B; b++)
            if (task[b] >= 0)
                local[task[b]] += lm_count_targets(tg + (size_t)b * env->T, env->T);
    }
    for (int t = 0; t < d->tw.n; t++) {
        D[t] = (double)dist_sum_i64(local[t]);
        coef[t] = D[t] > 0 ? d->tw.weight[t] / D[t] : 0.0;
    }
}

void seq_batches_task_metrics(const SeqBatches *d, ObjectiveMetric *out) {
    for (int t = 0; t < d->tw.n; t++)
        out[t] = (ObjectiveMetric){d->metric_names[t], "%.9g", NULL, 0};
}

/* The validation loss from its sums: the mean per target token, or with task
 * weights each task's mean into task_loss and their weighted sum. */
static double eval_result(const SeqBatches *d, double loss_sum, int64_t count,
                          const double *task_sum, const int64_t *task_count,
                          double *task_loss) {
    if (!d->tw.n) return count ? loss_sum / (double)count : NAN;
    double weighted = 0;
    int seen = 0;
    for (int t = 0; t < d->tw.n; t++) {
        task_loss[t] = task_count[t] ? task_sum[t] / (double)task_count[t] : NAN;
        if (task_count[t]) weighted += d->tw.weight[t] * task_loss[t], seen = 1;
    }
    return seen ? weighted : NAN;
}

/* data.mix with data.val_fraction: every file's held-out tail once, in file
 * order, B rows at a time (the last batch padded with rows without targets),
 * up to eval.batches batches. */
static double eval_mix(SeqBatches *d, const TrainEnv *env, double *task_loss) {
    int B = env->B, T = env->T, N = B * T, f = 0;
    double loss_sum = 0, task_sum[CFG_MAX_TASKS] = {0};
    int64_t count = 0, task_count[CFG_MAX_TASKS] = {0}, item;
    int *file = xmalloc((size_t)B * sizeof *file); /* (B) f * 256 + the row's task id */
    for (int s = 0; s < d->n_val_mix; s++) loader_seek(&d->val_mix[s], 0, 0);
    for (int batch = 0; batch < env->cfg->eval.batches && f < d->n_val_mix; batch++) {
        for (int b = 0; b < B; b++) {
            while (f < d->n_val_mix && d->val_mix[f].epoch > 0) f++;
            file[b] = f;
            if (f == d->n_val_mix) { /* padding: no targets */
                for (int j = 0; j < T; j++) {
                    d->inputs[b * T + j] = d->train_ds[0].eos_id;
                    d->targets[b * T + j] = -1;
                }
                continue;
            }
            int id = 0;
            if (loader_next_items(&d->val_mix[f], 1, d->inputs + b * T, d->targets + b * T,
                                  &item) != 0 ||
                (d->tw.n && dataset_task_of(&d->train_ds[f], item, &id) != 0))
                data_failed(env);
            if (d->tw.n) file[b] = f * 256 + id;
        }
        gpt_forward(env->model, d->inputs, d->targets, B, T, d->logp);
        for (int i = 0; i < N; i++)
            if (d->targets[i] >= 0) {
                loss_sum -= d->logp[i];
                count++;
                if (d->tw.n) {
                    int t = d->task_map[file[i / T] / 256][file[i / T] % 256];
                    task_sum[t] -= d->logp[i];
                    task_count[t]++;
                }
            }
        while (f < d->n_val_mix && d->val_mix[f].epoch > 0) f++;
    }
    free(file);
    return eval_result(d, loss_sum, count, task_sum, task_count, task_loss);
}

double seq_batches_eval(SeqBatches *d, const TrainEnv *env, double *task_loss) {
    if (!d->have_val) return NAN;
    if (d->n_val_mix) return eval_mix(d, env, task_loss);
    DataLoader *dl = &d->val_dl;
    int N = env->B * env->T, T = env->T;
    const signed char *map = d->task_map[d->have_val_ds ? CFG_MAX_MIX : 0];
    loader_seek(dl, 0, 0);
    double loss_sum = 0, task_sum[CFG_MAX_TASKS] = {0};
    int64_t count = 0, task_count[CFG_MAX_TASKS] = {0};
    int64_t *items = xmalloc((size_t)env->B * sizeof *items);
    for (int b = 0; b < env->cfg->eval.batches; b++) {
        if (loader_next_items(dl, env->B, d->inputs, d->targets, items) != 0) data_failed(env);
        gpt_forward(env->model, d->inputs, d->targets, env->B, env->T, d->logp);
        for (int i = 0; i < N; i++)
            if (d->targets[i] >= 0) {
                loss_sum -= d->logp[i];
                count++;
                if (d->tw.n) {
                    int id = 0;
                    if (dataset_task_of(dl->ds, items[i / T], &id) != 0) data_failed(env);
                    int t = map[id];
                    task_sum[t] -= d->logp[i];
                    task_count[t]++;
                }
            }
        if (dl->epoch > 0) break; /* the validation set is smaller than eval.batches */
    }
    free(items);
    return eval_result(d, loss_sum, count, task_sum, task_count, task_loss);
}
