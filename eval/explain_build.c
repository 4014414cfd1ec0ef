/* eval/explain_build.c — `retort explain build`: explanation JSONL into the
 * multi-task sft JSONL of MT-CoT (answer + explanation) and COLLATE (answer,
 * rationale, rationale-answer); the formats are in explain.h. Each line's
 * examples are plain string concatenations, so the texts are exactly what the
 * documentation derives; the answer task is kept once per (question, answer)
 * through a small hash set. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/explain.h"
#include "eval/jsonl.h"
#include "util/util.h"

static const char *const TASK_NAMES[EXPLAIN_N_TASKS] = {"answer", "explanation", "rationale",
                                                        "rationale-answer"};
static const char *const TASK_PREFIXES[EXPLAIN_N_TASKS] = {"[answer] ", "[explain] ",
                                                           "[rationale] ", "[rationale] "};

const char *explain_task_name(ExplainTask t) { return TASK_NAMES[t]; }
const char *explain_task_default_prefix(ExplainTask t) { return TASK_PREFIXES[t]; }

int explain_task_from_name(const char *name, ExplainTask *out) {
    for (int i = 0; i < EXPLAIN_N_TASKS; i++)
        if (!strcmp(name, TASK_NAMES[i])) {
            *out = (ExplainTask)i;
            return 0;
        }
    return err_set("unknown task '%s'; expected answer, explanation (MT-CoT), rationale or "
                   "rationale-answer (COLLATE)",
                   name);
}

int explain_tasks_parse(const char *list, ExplainBuildJob *job) {
    job->n_tasks = 0;
    char *copy = xstrdup(list), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
        ExplainTask task = EXPLAIN_TASK_ANSWER;
        if ((rc = explain_task_from_name(t, &task)) != 0) break;
        for (int i = 0; i < job->n_tasks; i++)
            if (job->tasks[i] == task) rc = err_set("--tasks names '%s' twice", t);
        if (rc == 0) job->tasks[job->n_tasks++] = task;
    }
    free(copy);
    if (rc == 0 && job->n_tasks == 0)
        rc = err_set("--tasks is empty; give e.g. answer,explanation");
    return rc;
}

/* ------------------------------------------------ (question, answer) set */

typedef struct {
    char **keys; /* each a size_t length, then that many bytes (qa_key) */
    size_t cap, n;
} StrSet;

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* Adds key (len bytes, owned by the set afterwards); 1 when it was new, 0 when
 * present (key freed). */
static int strset_add(StrSet *s, char *key, size_t len) {
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        char **keys = xcalloc(cap, sizeof(char *));
        for (size_t i = 0; i < s->cap; i++)
            if (s->keys[i]) {
                size_t l;
                memcpy(&l, s->keys[i], sizeof l);
                size_t j = fnv1a(s->keys[i] + sizeof l, l) & (cap - 1);
                while (keys[j]) j = (j + 1) & (cap - 1);
                keys[j] = s->keys[i];
            }
        free(s->keys);
        s->keys = keys;
        s->cap = cap;
    }
    size_t j = fnv1a(key + sizeof len, len) & (s->cap - 1);
    for (; s->keys[j]; j = (j + 1) & (s->cap - 1)) {
        size_t l;
        memcpy(&l, s->keys[j], sizeof l);
        if (l == len && !memcmp(s->keys[j] + sizeof l, key + sizeof len, len)) {
            free(key);
            return 0;
        }
    }
    s->keys[j] = key;
    s->n++;
    return 1;
}

static void strset_free(StrSet *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->keys[i]);
    free(s->keys);
}

/* The key of (question, answer): the length of the whole, then question, a
 * 0 byte, answer. */
static char *qa_key(const char *q, const char *a, size_t *len) {
    size_t nq = strlen(q), na = strlen(a);
    *len = nq + 1 + na;
    char *k = xmalloc(sizeof *len + *len);
    memcpy(k, len, sizeof *len);
    memcpy(k + sizeof *len, q, nq + 1);
    memcpy(k + sizeof *len + nq + 1, a, na);
    return k;
}

/* ---------------------------------------------------------------- the job */

static char *concat(const char *const *parts, int n) {
    size_t len = 0;
    for (int i = 0; i < n; i++) len += strlen(parts[i]);
    char *s = xmalloc(len + 1), *p = s;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(parts[i]);
        memcpy(p, parts[i], l);
        p += l;
    }
    *p = '\0';
    return s;
}

static char *gold_text(json_t *v) {
    if (json_is_string(v)) return xstrdup(json_string_value(v));
    if (json_is_integer(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(v));
        return xstrdup(buf);
    }
    return NULL;
}

static int emit(FILE *out, const char *path, const char *tmp, const char *task_field,
                const char *prompt, const char *completion, const char *task) {
    json_t *o = json_object();
    json_object_set_new(o, "prompt", json_string(prompt));
    json_object_set_new(o, "completion", json_string(completion));
    json_object_set_new(o, task_field, json_string(task));
    char *d = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    int rc = fprintf(out, "%s\n", d) < 0 ? err_write(path, tmp, errno, strlen(d) + 1, 1) : 0;
    free(d);
    return rc;
}

static int build_line(const ExplainBuildJob *job, FILE *out, const char *tmp, long lineno,
                      json_t *obj, StrSet *seen, ExplainBuildStats *st) {
    const char *qf = job->question_field ? job->question_field : "question";
    const char *af = job->answer_field ? job->answer_field : "answer";
    const char *ef = job->explanation_field ? job->explanation_field : "explanation";
    const char *sep = job->separator ? job->separator : EXPLAIN_SEPARATOR;
    const char *joiner = job->answer_joiner ? job->answer_joiner : EXPLAIN_ANSWER_JOINER;
    if (job->only_correct && json_is_false(json_object_get(obj, "correct"))) {
        st->skipped_incorrect++;
        return 0;
    }
    const char *q = json_string_value(json_object_get(obj, qf));
    if (!q)
        return err_set("%s:%ld: field '%s' is missing or not a string (set it with "
                       "--question-field)",
                       job->input, lineno, qf);
    int needs_e = -1; /* the first task that reads the explanation */
    for (int i = 0; i < job->n_tasks && needs_e < 0; i++)
        if (job->tasks[i] != EXPLAIN_TASK_ANSWER) needs_e = (int)job->tasks[i];
    const char *e = json_string_value(json_object_get(obj, ef));
    if (needs_e >= 0 && !e)
        return err_set("%s:%ld: field '%s' is missing or not a string; the %s task needs it "
                       "(set it with --explanation-field)",
                       job->input, lineno, ef, TASK_NAMES[needs_e]);
    char *a = gold_text(json_object_get(obj, af));
    if (!a)
        return err_set("%s:%ld: answer field '%s' is missing or not a string or integer (set "
                       "it with --answer-field)",
                       job->input, lineno, af);
    int rc = 0;
    for (int i = 0; i < job->n_tasks && rc == 0; i++) {
        ExplainTask t = job->tasks[i];
        const char *p = job->prefix[t] ? job->prefix[t] : TASK_PREFIXES[t];
        /* rationale-answer continues the rationale task's text, so it takes the
         * rationale prefix given for it unless it has its own */
        if (t == EXPLAIN_TASK_RATIONALE_ANSWER && !job->prefix[t] && job->prefix[EXPLAIN_TASK_RATIONALE])
            p = job->prefix[EXPLAIN_TASK_RATIONALE];
        char *prompt = NULL, *completion = NULL;
        switch (t) {
        case EXPLAIN_TASK_ANSWER: {
            size_t len;
            char *key = qa_key(q, a, &len);
            if (!strset_add(seen, key, len)) {
                st->repeated_answers++;
                continue;
            }
            prompt = concat((const char *[]){p, q, sep}, 3);
            completion = xstrdup(a);
            break;
        }
        case EXPLAIN_TASK_EXPLANATION:
            prompt = concat((const char *[]){p, q, sep}, 3);
            completion = job->explanation_only ? xstrdup(e)
                                               : concat((const char *[]){e, joiner, a}, 3);
            break;
        case EXPLAIN_TASK_RATIONALE:
            prompt = concat((const char *[]){p, q, sep}, 3);
            completion = xstrdup(e);
            break;
        default: /* EXPLAIN_TASK_RATIONALE_ANSWER */
            prompt = concat((const char *[]){p, q, sep, e, joiner}, 5);
            completion = xstrdup(a);
            break;
        }
        rc = emit(out, job->output, tmp, job->task_field ? job->task_field : "task", prompt,
                  completion, TASK_NAMES[t]);
        if (rc == 0) st->written[t]++;
        free(prompt);
        free(completion);
    }
    free(a);
    return rc;
}

int explain_build(const ExplainBuildJob *job, ExplainBuildStats *stats) {
    ExplainBuildStats st = {0};
    if (!job->input || !job->output) return err_set("an input JSONL and an output JSONL are needed");
    if (job->n_tasks < 1) return err_set("no task to build (--tasks)");
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", job->output) >= (int)sizeof tmp)
        return err_set("path too long: %s", job->output);
    FILE *in = fopen(job->input, "r");
    if (!in) return err_set("cannot open %s: %s", job->input, strerror(errno));
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return err_set("cannot create %s: %s", tmp, strerror(errno));
    }
    StrSet seen = {0};
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0, got;
    json_t *obj;
    while (rc == 0 && (got = jsonl_next_object(in, job->input, &line, &cap, &lineno, &obj)) != 0) {
        rc = got < 0 ? -1 : build_line(job, out, tmp, lineno, obj, &seen, &st);
        json_decref(obj);
        st.lines++;
    }
    free(line);
    fclose(in);
    strset_free(&seen);
    int64_t total = 0;
    for (int t = 0; t < EXPLAIN_N_TASKS; t++) total += st.written[t];
    if (rc == 0 && total == 0)
        rc = err_set("%s: no example was written (%lld lines, %lld skipped as incorrect)",
                     job->input, (long long)st.lines, (long long)st.skipped_incorrect);
    if (rc == 0) rc = file_commit(out, tmp, job->output);
    else file_discard(out, tmp);
    if (stats) *stats = st;
    return rc;
}
