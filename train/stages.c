/* train/stages.c — multi-stage runs (see stages.h): parse the stages file with
 * libyaml, then run each stage as an ordinary train_run on the base config
 * plus the stage's overrides. */
#include "train/stages.h"

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "model/checkpoint.h"
#include "train/config.h"
#include "train/trainer.h"
#include "util/util.h"

#define MAX_CKPTS 4096

static const char *scalar(yaml_document_t *d, yaml_node_t *n) {
    (void)d;
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static int parse_stage(StagesPlan *p, yaml_document_t *d, yaml_node_t *node, Stage *s) {
    if (node->type != YAML_MAPPING_NODE)
        return err_set("%s:%d: a stage is a mapping with name, init_from and set", p->path,
                       line_of(node));
    for (yaml_node_pair_t *kv = node->data.mapping.pairs.start; kv < node->data.mapping.pairs.top;
         kv++) {
        yaml_node_t *k = yaml_document_get_node(d, kv->key), *v = yaml_document_get_node(d, kv->value);
        const char *key = scalar(d, k), *val = scalar(d, v);
        if (!key) return err_set("%s:%d: stage keys are plain names", p->path, line_of(k));
        if (!strcmp(key, "name") || !strcmp(key, "init_from")) {
            char *dst = !strcmp(key, "name") ? s->name : s->init_from;
            if (!val || strlen(val) >= sizeof s->name)
                return err_set("%s:%d: stage %s must be a short string", p->path, line_of(v), key);
            snprintf(dst, sizeof s->name, "%s", val);
        } else if (!strcmp(key, "set")) {
            if (v->type != YAML_MAPPING_NODE)
                return err_set("%s:%d: 'set' is a mapping of section.key: value", p->path,
                               line_of(v));
            for (yaml_node_pair_t *sv = v->data.mapping.pairs.start; sv < v->data.mapping.pairs.top;
                 sv++) {
                const char *sk = scalar(d, yaml_document_get_node(d, sv->key));
                yaml_node_t *vn = yaml_document_get_node(d, sv->value);
                const char *svv = scalar(d, vn);
                if (!sk || !svv)
                    return err_set("%s:%d: 'set' entries are section.key: scalar", p->path,
                                   line_of(vn));
                if (s->n_sets == STAGES_MAX_SETS)
                    return err_set("%s:%d: more than %d overrides in one stage", p->path,
                                   line_of(vn), STAGES_MAX_SETS);
                if ((size_t)snprintf(s->sets[s->n_sets], sizeof s->sets[0], "%s=%s", sk, svv) >=
                    sizeof s->sets[0])
                    return err_set("%s:%d: value of %s is too long", p->path, line_of(vn), sk);
                /* check the key and value now, not halfway through the run */
                Config probe;
                config_defaults(&probe);
                if (config_set(&probe, s->sets[s->n_sets]) != 0)
                    return err_set("%s:%d: stage '%s': %s", p->path, line_of(vn), s->name,
                                   err_msg());
                s->n_sets++;
            }
        } else {
            return err_set("%s:%d: unknown stage key '%s' (a stage has name, init_from, set)",
                           p->path, line_of(k), key);
        }
    }
    return 0;
}

static int check_name(const StagesPlan *p, int i) {
    const Stage *s = &p->stages[i];
    if (!s->name[0]) return err_set("%s: stage %d has no name", p->path, i + 1);
    for (const char *c = s->name; *c; c++)
        if (!(isalnum((unsigned char)*c) || *c == '-' || *c == '_'))
            return err_set("%s: stage name '%s' must be letters, digits, - or _ (it names a "
                           "directory)", p->path, s->name);
    for (int j = 0; j < i; j++)
        if (!strcmp(p->stages[j].name, s->name))
            return err_set("%s: two stages are named '%s'", p->path, s->name);
    if (s->init_from[0]) {
        int found = 0;
        for (int j = 0; j < i; j++) found |= !strcmp(p->stages[j].name, s->init_from);
        if (!found)
            return err_set("%s: stage '%s' starts from '%s', which is not an earlier stage",
                           p->path, s->name, s->init_from);
    }
    return 0;
}

int stages_load(StagesPlan *p, const char *path) {
    memset(p, 0, sizeof *p);
    snprintf(p->path, sizeof p->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return err_set("%s: cannot open stages file", path);
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    yaml_document_t d;
    int rc = 0;
    if (!yaml_parser_load(&parser, &d)) {
        rc = err_set("%s:%zu: YAML error: %s", path, parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "unknown");
        yaml_parser_delete(&parser);
        fclose(f);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&d);
    if (!root || root->type != YAML_MAPPING_NODE)
        rc = err_set("%s: a stages file is a mapping with base, out_dir and stages", path);
    for (yaml_node_pair_t *kv = root && rc == 0 ? root->data.mapping.pairs.start : NULL;
         kv && kv < root->data.mapping.pairs.top && rc == 0; kv++) {
        yaml_node_t *k = yaml_document_get_node(&d, kv->key), *v = yaml_document_get_node(&d, kv->value);
        const char *key = scalar(&d, k), *val = scalar(&d, v);
        if (key && (!strcmp(key, "base") || !strcmp(key, "out_dir")) && val) {
            char *dst = !strcmp(key, "base") ? p->base : p->out_dir;
            if (!strcmp(key, "base") && val[0] != '/' && strrchr(path, '/')) {
                int dir_len = (int)(strrchr(path, '/') - path);
                snprintf(dst, sizeof p->base, "%.*s/%s", dir_len, path, val);
            } else {
                snprintf(dst, sizeof p->base, "%s", val);
            }
        } else if (key && !strcmp(key, "stages") && v->type == YAML_SEQUENCE_NODE) {
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top && rc == 0; it++) {
                if (p->n_stages == STAGES_MAX) {
                    rc = err_set("%s: more than %d stages", path, STAGES_MAX);
                    break;
                }
                Stage *s = &p->stages[p->n_stages];
                rc = parse_stage(p, &d, yaml_document_get_node(&d, *it), s);
                if (rc == 0) rc = check_name(p, p->n_stages);
                p->n_stages++;
            }
        } else {
            rc = err_set("%s:%d: unknown or malformed key '%s' (expected base: FILE, out_dir: "
                         "DIR, stages: [...])",
                         path, line_of(k), key ? key : "?");
        }
    }
    if (rc == 0 && (!p->base[0] || !p->out_dir[0] || p->n_stages == 0))
        rc = err_set("%s: base, out_dir and at least one stage are required", path);
    yaml_document_delete(&d);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

int stages_add_common_set(StagesPlan *p, const char *kv) {
    Stage *s = &p->common;
    if (s->n_sets == STAGES_MAX_SETS)
        return err_set("more than %d --set overrides", STAGES_MAX_SETS);
    if (strlen(kv) >= sizeof s->sets[0]) return err_set("--set %.40s...: too long", kv);
    Config probe;
    config_defaults(&probe);
    if (config_set(&probe, kv) != 0) return err_set("--set %s: %s", kv, err_msg());
    snprintf(s->sets[s->n_sets++], sizeof s->sets[0], "%s", kv);
    return 0;
}

/* The stage's run config: base + common overrides + its own, out_dir/<name>,
 * init_from. */
static int stage_config(const StagesPlan *p, int i, Config *c) {
    const Stage *s = &p->stages[i];
    config_defaults(c);
    if (config_load_yaml(c, p->base) != 0) return -1;
    for (int k = 0; k < p->common.n_sets; k++)
        if (config_set(c, p->common.sets[k]) != 0)
            return err_set("--set %s: %s", p->common.sets[k], err_msg());
    for (int k = 0; k < s->n_sets; k++)
        if (config_set(c, s->sets[k]) != 0)
            return err_set("stage '%s': %s", s->name, err_msg());
    char dir[2048];
    size_t len = (size_t)snprintf(dir, sizeof dir, "%s/%s", p->out_dir, s->name);
    if (len >= sizeof c->train.out_dir) return err_set("out_dir too long: %s", dir);
    memcpy(c->train.out_dir, dir, len + 1);
    if (s->init_from[0]) {
        char from[2048];
        snprintf(from, sizeof from, "%s/%s", p->out_dir, s->init_from);
        int64_t steps[MAX_CKPTS];
        int n = ckpt_list(from, steps, MAX_CKPTS);
        if (n == 0)
            return err_set("stage '%s' starts from stage '%s', which has no checkpoint in %s",
                           s->name, s->init_from, from);
        ckpt_dir_name(c->model.init, sizeof c->model.init, from, steps[0]);
    }
    return 0;
}

/* Whether the stage's newest complete checkpoint is its last step. */
static int stage_done(const Config *c, int64_t *last) {
    int64_t steps[MAX_CKPTS];
    int n = ckpt_list(c->train.out_dir, steps, MAX_CKPTS);
    *last = n > 0 ? steps[0] : 0;
    if (n == 0) return 0;
    char dir[4096], path[4200];
    ckpt_dir_name(dir, sizeof dir, c->train.out_dir, steps[0]);
    snprintf(path, sizeof path, "%s/trainer.json", dir);
    /* a run that ended on its own saves at its final step; its trainer.json
     * holds the resolved step count (train.epochs may have set it) */
    json_error_t e;
    json_t *root = json_load_file(path, 0, &e);
    json_t *total = json_object_get(json_object_get(json_object_get(root, "config"), "train"),
                                    "steps");
    int done = json_is_integer(total) && steps[0] >= json_integer_value(total);
    json_decref(root);
    return done;
}

int stages_run(const StagesPlan *p, int resume, int quiet) {
    if (mkdir_p(p->out_dir) != 0) return -1;
    for (int i = 0; i < p->n_stages; i++) {
        const Stage *s = &p->stages[i];
        Config c;
        if (stage_config(p, i, &c) != 0) return -1;
        int64_t last;
        int done = stage_done(&c, &last);
        if (done) {
            printf("stage %d/%d '%s': complete (step %lld), skipped\n", i + 1, p->n_stages,
                   s->name, (long long)last);
            continue;
        }
        if (last > 0 && !resume)
            return err_set("stage '%s' has checkpoints in %s but is not finished; continue with "
                           "--resume, or remove the directory to start it over",
                           s->name, c.train.out_dir);
        printf("stage %d/%d '%s'%s%s%s -> %s\n", i + 1, p->n_stages, s->name,
               c.model.init[0] ? " from " : "", c.model.init, last > 0 ? " (resuming)" : "",
               c.train.out_dir);
        fflush(stdout);
        TrainOptions o = {last > 0, quiet};
        if (train_run(&c, &o) != 0) return err_set("stage '%s': %s", s->name, err_msg());
        if (!stage_done(&c, &last)) {
            printf("stage '%s' stopped at step %lld; rerun with --resume to continue\n", s->name,
                   (long long)last);
            return 0; /* stopped by a signal: the checkpoint is saved */
        }
    }
    printf("all %d stages complete in %s\n", p->n_stages, p->out_dir);
    return 0;
}
