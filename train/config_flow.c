/* train/config_flow.c — the config's two structured values, a mapping
 * (objective.task_weights) and a list (data.mix): written as YAML flow text
 * from a config file's node (config_flow.h), and read back from that text
 * into TaskWeights and DataMix (config.h) with every entry checked.
 *
 * Storing the canonical text instead of a second kind of field keeps the key
 * table's one-value-per-key machinery (--set, JSON in checkpoints, --help)
 * unchanged: `--set objective.task_weights="{answer: 0.7}"` is the same text a
 * config file's mapping becomes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/config.h"
#include "train/config_flow.h"
#include "util/util.h"

/* ---- node -> text ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int overflow;
} Out;

static void put(Out *o, const char *s, size_t n) {
    if (o->len + n + 1 > o->cap) {
        o->overflow = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static int plain_safe(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("_./+-", s[i])))
            return 0;
    return 1;
}

static void put_scalar(Out *o, const unsigned char *s, size_t n) {
    if (plain_safe(s, n)) {
        put(o, (const char *)s, n);
        return;
    }
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        char esc[8];
        if (s[i] == '"' || s[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)s[i];
            put(o, esc, 2);
        } else if (s[i] < 0x20) {
            snprintf(esc, sizeof esc, "\\x%02X", s[i]);
            put(o, esc, 4);
        } else {
            put(o, (const char *)s + i, 1);
        }
    }
    put(o, "\"", 1);
}

static void put_node(Out *o, yaml_document_t *doc, yaml_node_t *n, int depth) {
    if (!n || depth > 8) {
        o->overflow = 1;
        return;
    }
    switch (n->type) {
    case YAML_SCALAR_NODE: put_scalar(o, n->data.scalar.value, n->data.scalar.length); break;
    case YAML_SEQUENCE_NODE:
        put(o, "[", 1);
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            if (it > n->data.sequence.items.start) put(o, ", ", 2);
            put_node(o, doc, yaml_document_get_node(doc, *it), depth + 1);
        }
        put(o, "]", 1);
        break;
    case YAML_MAPPING_NODE:
        put(o, "{", 1);
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            if (p > n->data.mapping.pairs.start) put(o, ", ", 2);
            put_node(o, doc, yaml_document_get_node(doc, p->key), depth + 1);
            put(o, ": ", 2);
            put_node(o, doc, yaml_document_get_node(doc, p->value), depth + 1);
        }
        put(o, "}", 1);
        break;
    default: o->overflow = 1;
    }
}

int config_flow_text(yaml_document_t *doc, yaml_node_t *node, char *out, size_t cap) {
    Out o = {out, 0, cap, 0};
    if (cap) out[0] = '\0';
    put_node(&o, doc, node, 0);
    return o.overflow ? -1 : 0;
}

/* ---- text -> values ---- */

/* Parses text as one YAML document into doc. -1 with the error set. */
static int parse_flow(const char *key, const char *text, yaml_document_t *doc) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return err_set("config: %s: out of memory", key);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    int ok = yaml_parser_load(&parser, doc);
    int rc = 0;
    if (!ok)
        rc = err_set("config: %s: '%.200s' is not valid YAML (%s at column %zu)", key, text,
                     parser.problem ? parser.problem : "syntax error",
                     parser.problem_mark.column + 1);
    yaml_parser_delete(&parser);
    return rc;
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* A number scalar: -1 (error set) unless it reads whole as a finite double. */
static int number(const char *key, const char *what, const yaml_node_t *n, double *v) {
    const char *s = scalar(n);
    char *end = NULL;
    if (s) {
        errno = 0;
        *v = strtod(s, &end);
    }
    if (!s || !*s || *end || !isfinite(*v))
        return err_set("config: %s: the weight of %s is %s; a weight is a finite number", key,
                       what, s ? (*s ? s : "empty") : "not a single value");
    return 0;
}

int config_task_weights(const Config *c, TaskWeights *out) {
    const char *key = "objective.task_weights";
    memset(out, 0, sizeof *out);
    if (!c->objective.task_weights[0]) return 0;
    yaml_document_t doc;
    if (parse_flow(key, c->objective.task_weights, &doc) != 0) return -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = 0;
    double total = 0;
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = err_set("config: %s must be a mapping of task name to loss weight, e.g. "
                     "{answer: 0.7, explanation: 0.3}; found '%.200s'",
                     key, c->objective.task_weights);
        goto done;
    }
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *name = scalar(yaml_document_get_node(&doc, p->key));
        char what[CFG_TASK_NAME + 16];
        if (!name || !*name || strlen(name) >= CFG_TASK_NAME) {
            rc = err_set("config: %s: a task name must be a non-empty name of at most %d bytes",
                         key, CFG_TASK_NAME - 1);
            goto done;
        }
        for (int t = 0; t < out->n; t++)
            if (!strcmp(out->name[t], name)) {
                rc = err_set("config: %s: task '%s' is given twice", key, name);
                goto done;
            }
        if (out->n == CFG_MAX_TASKS) {
            rc = err_set("config: %s: more than %d tasks", key, CFG_MAX_TASKS);
            goto done;
        }
        snprintf(what, sizeof what, "task '%s'", name);
        double w;
        if (number(key, what, yaml_document_get_node(&doc, p->value), &w) != 0) {
            rc = -1;
            goto done;
        }
        if (w < 0) {
            rc = err_set("config: %s: task '%s' has weight %g; weights must be >= 0 (0 trains "
                         "nothing on that task)", key, name, w);
            goto done;
        }
        snprintf(out->name[out->n], CFG_TASK_NAME, "%s", name);
        out->weight[out->n++] = w;
        total += w;
    }
    if (out->n == 0 || total <= 0)
        rc = err_set("config: %s: %s; give at least one task a weight > 0 (or leave the key "
                     "unset for one loss over all tokens)",
                     key, out->n ? "every weight is 0" : "no task is listed");
done:
    yaml_document_delete(&doc);
    if (rc != 0) memset(out, 0, sizeof *out);
    return rc;
}

int config_data_mix(const Config *c, DataMix *out) {
    const char *key = "data.mix";
    memset(out, 0, sizeof *out);
    if (!c->data.mix[0]) return 0;
    yaml_document_t doc;
    if (parse_flow(key, c->data.mix, &doc) != 0) return -1;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = 0;
    if (!root || root->type != YAML_SEQUENCE_NODE || root->data.sequence.items.start ==
                                                         root->data.sequence.items.top) {
        rc = err_set("config: %s must be a non-empty list of {path: FILE.h5, weight: W}, e.g. "
                     "[{path: a.h5, weight: 0.7}, {path: b.h5, weight: 0.3}]; found '%.200s'",
                     key, c->data.mix);
        goto done;
    }
    for (yaml_node_item_t *it = root->data.sequence.items.start;
         it < root->data.sequence.items.top; it++) {
        int i = (int)(it - root->data.sequence.items.start);
        yaml_node_t *e = yaml_document_get_node(&doc, *it);
        if (i == CFG_MAX_MIX) {
            rc = err_set("config: %s: more than %d sources", key, CFG_MAX_MIX);
            goto done;
        }
        if (!e || e->type != YAML_MAPPING_NODE) {
            rc = err_set("config: %s: entry %d is not a mapping {path: FILE.h5, weight: W}", key,
                         i + 1);
            goto done;
        }
        const char *path = NULL;
        int have_weight = 0;
        for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top;
             p++) {
            const char *k = scalar(yaml_document_get_node(&doc, p->key));
            yaml_node_t *v = yaml_document_get_node(&doc, p->value);
            if (k && !strcmp(k, "path")) {
                path = scalar(v);
            } else if (k && !strcmp(k, "weight")) {
                char what[32];
                snprintf(what, sizeof what, "entry %d", i + 1);
                if (number(key, what, v, &out->weight[i]) != 0) {
                    rc = -1;
                    goto done;
                }
                have_weight = 1;
            } else {
                rc = err_set("config: %s: entry %d has key '%s'; an entry has path and weight",
                             key, i + 1, k ? k : "(not a name)");
                goto done;
            }
        }
        if (!path || !*path || strlen(path) >= CFG_STR) {
            rc = err_set("config: %s: entry %d needs a path (an HDF5 file, under %d bytes)", key,
                         i + 1, CFG_STR);
            goto done;
        }
        if (!have_weight || out->weight[i] <= 0) {
            rc = err_set("config: %s: entry %d (%s) needs a weight > 0 (a source of weight 0 is "
                         "never drawn: remove it)", key, i + 1, path);
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(out->path[j], path)) {
                rc = err_set("config: %s: %s is listed twice; give it one entry with the summed "
                             "weight", key, path);
                goto done;
            }
        snprintf(out->path[i], CFG_STR, "%s", path);
        out->n = i + 1;
    }
done:
    yaml_document_delete(&doc);
    if (rc != 0) memset(out, 0, sizeof *out);
    return rc;
}
