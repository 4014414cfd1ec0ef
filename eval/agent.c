/* eval/agent.c — the α-UMi loop and its metrics (see agent.h).
 *
 * The context is kept as token ids, not text: a trained role's turn ends with
 * the EOS id, which no text encodes, and the builder renders turns the same
 * way (data/build.c), so the models see at inference exactly the layout they
 * were trained on. Step-level metrics and the end-to-end run share one
 * function per role turn (speak). */
#include "eval/agent.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/generate.h"
#include "eval/metrics.h"
#include "eval/toolenv.h"
#include "util/utf8.h"
#include "util/util.h"
#include "util/progress.h"

/* ---------------------------------------------------------------- parsing */

static const char *skip_spaces(const char *s) {
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

/* s[0:n] with surrounding whitespace removed, as a new string. */
static char *trimmed(const char *s, size_t n) {
    while (n > 0 && isspace((unsigned char)*s)) s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1])) n--;
    char *out = xmalloc(n + 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return out;
}

Decision agent_parse_decision(const char *text) {
    Decision d = DECISION_NONE;
    int seen = 0;
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *p = skip_spaces(line);
        if (!strncmp(p, "Next:", 5)) {
            char *v = trimmed(p + 5, len - (size_t)(p + 5 - line));
            size_t n = strlen(v);
            if (n > 0 && v[n - 1] == '.') v[n - 1] = '\0'; /* upstream ends it with a period */
            /* "conclude": what retort's data said before it took upstream's word */
            d = !strcmp(v, "caller")                                ? DECISION_CALLER
                : !strcmp(v, "conclusion") || !strcmp(v, "conclude") ? DECISION_CONCLUSION
                : !strcmp(v, "give up")                             ? DECISION_GIVE_UP
                                                                    : DECISION_NONE;
            seen = 1;
            free(v);
        }
        line = end ? end + 1 : NULL;
    }
    return seen ? d : DECISION_NONE;
}

const char *agent_decision_name(Decision d) {
    switch (d) {
    case DECISION_CALLER: return "caller";
    case DECISION_CONCLUSION: return "conclusion";
    case DECISION_GIVE_UP: return "give up";
    case DECISION_NONE: break;
    }
    return "none";
}

int agent_parse_action(const char *text, char **name, char **args) {
    *name = *args = NULL;
    const char *action = NULL;
    for (const char *line = text; line && *line;) {
        const char *p = skip_spaces(line);
        if (!strncmp(p, "Action:", 7)) {
            action = p + 7;
            break;
        }
        line = strchr(line, '\n');
        if (line) line++;
    }
    if (!action) return -1;
    const char *end = strchr(action, '\n');
    *name = trimmed(action, end ? (size_t)(end - action) : strlen(action));
    const char *input = end ? strstr(end, "Action Input:") : NULL;
    *args = input ? trimmed(input + 13, strlen(input + 13)) : xstrdup("");
    return 0;
}

/* A JSON value as comparable text: numbers by value ("42" for 42 and 42.0),
 * strings as themselves, anything else as compact sorted JSON. */
static char *canonical_value(const json_t *v) {
    char buf[64];
    if (json_is_number(v)) {
        snprintf(buf, sizeof buf, "%.10g", json_number_value(v));
        return xstrdup(buf);
    }
    if (json_is_string(v)) return xstrdup(json_string_value(v));
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
    return s ? s : xstrdup("");
}

static json_t *load_object(const char *text) {
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* Sum over pred's keys of 1 (same value in gold) or 1/2 (key only). */
static double pair_matches(const json_t *pred, const json_t *gold) {
    double hits = 0;
    const char *key;
    json_t *pv;
    json_object_foreach((json_t *)pred, key, pv) {
        const json_t *gv = json_object_get(gold, key);
        if (!gv) continue;
        char *a = canonical_value(pv), *b = canonical_value(gv);
        hits += strcmp(a, b) == 0 ? 1.0 : 0.5;
        free(a);
        free(b);
    }
    return hits;
}

double agent_arg_f1(const char *pred_args, const char *gold_args) {
    json_t *p = load_object(pred_args), *g = load_object(gold_args);
    size_t np = p ? json_object_size(p) : 0, ng = g ? json_object_size(g) : 0;
    double f1;
    if (np == 0 || ng == 0) {
        f1 = np == 0 && ng == 0 && p && g ? 1.0 : 0.0;
    } else {
        double hits = pair_matches(p, g);
        double prec = hits / (double)np, rec = hits / (double)ng;
        f1 = hits > 0 ? 2 * prec * rec / (prec + rec) : 0.0;
    }
    json_decref(p);
    json_decref(g);
    return f1;
}

int agent_args_equal(const char *pred_args, const char *gold_args) {
    json_t *p = load_object(pred_args), *g = load_object(gold_args);
    int eq = p && g && json_object_size(p) == json_object_size(g) &&
             pair_matches(p, g) == (double)json_object_size(g);
    json_decref(p);
    json_decref(g);
    return eq;
}

static int word_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

int agent_answer_in(const char *text, const char *answer) {
    size_t n = strlen(answer);
    if (n == 0) return 0;
    for (const char *p = strstr(text, answer); p; p = strstr(p + 1, answer)) {
        char before = p > text ? p[-1] : ' ', after = p[n];
        int left_ok = !word_char(before) && !(before == '.' && p > text + 1 &&
                                              isdigit((unsigned char)p[-2]));
        int right_ok = !word_char(after) && !(after == '.' && isdigit((unsigned char)p[n + 1]));
        if (left_ok && right_ok) return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- context */

typedef struct {
    uint32_t *ids;
    int64_t n, cap;
    char *text;        /* --chat: the same turns as text, without the EOS tokens */
    size_t len, text_cap;
} Context;

static int is_model_role(const char *role) {
    return !strcmp(role, "planner") || !strcmp(role, "caller") || !strcmp(role, "summarizer");
}

static void ctx_append(const Agent *a, Context *c, const char *text) {
    size_t k = strlen(text);
    c->n = a->tok->encode(a->tok, text, k, &c->ids, &c->cap, c->n);
    if (!a->chat) return;
    if (c->len + k + 1 > c->text_cap) {
        c->text_cap = 2 * (c->len + k + 1);
        c->text = xrealloc(c->text, c->text_cap);
    }
    memcpy(c->text + c->len, text, k + 1);
    c->len += k;
}

static void ctx_free(Context *c) {
    free(c->ids);
    free(c->text);
}

/* --chat: the context's text wrapped by the template, as ids into *ids (from
 * 0); the count, or -1 with the error set. */
static int64_t chat_ids(const Agent *a, const Context *c, uint32_t **ids, int64_t *cap) {
    char *wrapped = chat_prompt_wrap(a->chat, c->text ? c->text : "");
    if (!wrapped) return -1;
    int64_t n = a->tok->encode(a->tok, wrapped, strlen(wrapped), ids, cap, 0);
    free(wrapped);
    return n;
}

/* --chat: EOS ends a turn too (the sampler's eos_id is the end-of-turn token). */
static int stop_at_eos(void *ctx, const int *tokens, int n) {
    return n > 0 && tokens[n - 1] == *(const int *)ctx;
}

static void ctx_eos(const Agent *a, Context *c) {
    if (c->n + 1 > c->cap) {
        c->cap = 2 * (c->n + 1);
        c->ids = xrealloc(c->ids, (size_t)c->cap * sizeof *c->ids);
    }
    c->ids[c->n++] = (uint32_t)a->tok->eos_id;
}

static void ctx_header(const Agent *a, Context *c, const char *role) {
    char h[48];
    snprintf(h, sizeof h, "<|%s|>\n", role);
    ctx_append(a, c, h);
}

/* One turn as data/build.c renders it. */
static void ctx_turn(const Agent *a, Context *c, const char *role, const char *content) {
    ctx_header(a, c, role);
    ctx_append(a, c, content);
    ctx_append(a, c, "\n");
    if (is_model_role(role)) ctx_eos(a, c);
}

static GPT *model_for(const Agent *a, const char *role) {
    return !strcmp(role, "planner") ? a->planner
           : !strcmp(role, "caller") ? a->caller
                                     : a->summarizer;
}

/* The role's turn after context c (c is left as it was): greedy until EOS. */
static char *speak(const Agent *a, const Context *c, const char *role) {
    GPT *m = model_for(a, role);
    int ctx_max = gpt_context_len(gpt_config(m));
    int max_new = a->max_new_tokens < ctx_max / 2 ? a->max_new_tokens : ctx_max / 2;
    Context p = {xmalloc((size_t)(c->n + 16) * sizeof(uint32_t)), c->n, c->n + 16, NULL, 0, 0};
    memcpy(p.ids, c->ids, (size_t)c->n * sizeof(uint32_t));
    if (a->chat && c->text) {
        p.text = xstrdup(c->text);
        p.len = p.text_cap = c->len;
    }
    ctx_header(a, &p, role);
    int eos = a->tok->eos_id, end = a->chat ? a->chat->end_of_turn : eos;
    if (a->chat && ((p.n = chat_ids(a, &p, &p.ids, &p.cap)) < 0)) {
        /* the template failed on this text: the role says nothing, and the error is shown */
        fprintf(stderr, "warning: %s\n", err_msg());
        ctx_free(&p);
        return xstrdup("");
    }
    int64_t start = p.n > ctx_max - max_new ? p.n - (ctx_max - max_new) : 0;
    int n = (int)(p.n - start);
    int *tokens = xmalloc((size_t)(n + max_new) * sizeof(int));
    for (int i = 0; i < n; i++) tokens[i] = (int)p.ids[start + i];
    SampleOptions so = {max_new, 0.0, 0, 1.0, end, NULL, NULL};
    if (end != eos) {
        so.stop = stop_at_eos;
        so.stop_ctx = &eos;
    }
    Rng rng;
    rng_seed(&rng, 1);
    int len = generate_sample(m, tokens, n, &so, &rng);
    uint32_t *out = xmalloc((size_t)(len - n + 1) * sizeof(uint32_t));
    int k = 0;
    for (int i = n; i < len && tokens[i] != end && tokens[i] != eos; i++)
        out[k++] = (uint32_t)tokens[i];
    char *text = tokenizer_decode(a->tok, out, k);
    size_t tl = strlen(text);
    if (tl > 0 && text[tl - 1] == '\n') text[--tl] = '\0';
    /* JSON needs well-formed UTF-8; the context then holds the same text */
    char *clean = utf8_sanitize(text, tl);
    free(text);
    text = clean;
    free(out);
    free(tokens);
    ctx_free(&p);
    return text;
}

/* ------------------------------------------------------------- end to end */

static void trace_turn(json_t *traj, const char *role, const char *content) {
    json_t *t = json_object();
    json_object_set_new(t, "role", json_string(role));
    json_object_set_new(t, "content", json_string(content));
    json_array_append_new(traj, t);
}

json_t *agent_run(const Agent *a, const char *query) {
    Context c = {0};
    json_t *traj = json_array();
    ctx_turn(a, &c, "user", query);
    trace_turn(traj, "user", query);
    const char *ended = "max steps";
    int steps = 0;
    while (steps < a->max_steps) {
        char *plan = speak(a, &c, "planner");
        steps++;
        ctx_turn(a, &c, "planner", plan);
        trace_turn(traj, "planner", plan);
        Decision d = agent_parse_decision(plan);
        free(plan);
        if (d != DECISION_CALLER) {
            ended = d == DECISION_NONE ? "no decision" : agent_decision_name(d);
            break;
        }
        char *act = speak(a, &c, "caller"), *name, *args;
        ctx_turn(a, &c, "caller", act);
        trace_turn(traj, "caller", act);
        char *obs = agent_parse_action(act, &name, &args) == 0
                        ? toolenv_call(name, args, NULL)
                        : xstrdup("Error: no 'Action:' line in the call");
        ctx_turn(a, &c, "observation", obs);
        trace_turn(traj, "observation", obs);
        free(act);
        free(name);
        free(args);
        free(obs);
    }
    char *answer = speak(a, &c, "summarizer");
    trace_turn(traj, "summarizer", answer);
    json_t *r = json_object();
    json_object_set_new(r, "trajectory", traj);
    json_object_set_new(r, "final_answer", json_string(answer));
    json_object_set_new(r, "ended", json_string(ended));
    json_object_set_new(r, "steps", json_integer(steps));
    free(answer);
    ctx_free(&c);
    return r;
}

/* ------------------------------------------------------------ evaluation */

/* Role and content of messages[i], or -1 with the error set. */
static int gold_turn(const json_t *msgs, size_t i, const char **role, const char **content) {
    const json_t *m = json_array_get(msgs, i);
    *role = json_string_value(json_object_get(m, "role"));
    *content = json_string_value(json_object_get(m, "content"));
    if (!*role || !*content)
        return err_set("messages[%zu] needs string fields 'role' and 'content'", i);
    return 0;
}

int64_t agent_prompt_ids(const Agent *a, const json_t *messages, size_t upto, uint32_t **ids,
                         int64_t *cap) {
    Context c = {*ids, 0, *cap, NULL, 0, 0};
    const char *role, *content;
    for (size_t i = 0; i <= upto; i++) {
        if (gold_turn(messages, i, &role, &content) != 0) {
            *ids = c.ids;
            *cap = c.cap;
            free(c.text);
            return -1;
        }
        if (i < upto) ctx_turn(a, &c, role, content);
        else ctx_header(a, &c, role);
    }
    if (a->chat) c.n = chat_ids(a, &c, &c.ids, &c.cap);
    *ids = c.ids;
    *cap = c.cap;
    free(c.text);
    return c.n;
}

void agent_score_step(const char *role, const char *pred, const char *gold, AgentMetrics *m) {
    if (!strcmp(role, "planner")) {
        m->plan_steps++;
        Decision d = agent_parse_decision(pred);
        m->plan_correct += d != DECISION_NONE && d == agent_parse_decision(gold);
    } else if (!strcmp(role, "caller")) {
        char *pn, *pa, *gn, *ga;
        int ok = agent_parse_action(pred, &pn, &pa) == 0;
        agent_parse_action(gold, &gn, &ga);
        m->call_steps++;
        int name_ok = ok && gn && !strcmp(pn, gn);
        m->tool_name_correct += name_ok;
        m->hallucinated += !ok || !toolenv_has_tool(pn);
        m->action_em += name_ok && agent_args_equal(pa, ga);
        m->arg_f1_sum += ok && ga ? agent_arg_f1(pa, ga) : 0.0;
        free(pn);
        free(pa);
        free(gn);
        free(ga);
    } else {
        m->summary_steps++;
        m->rouge_sum += rouge_l_f(pred, gold);
    }
}

int agent_eval_task(const Agent *a, const json_t *task, AgentMetrics *m, json_t **trace) {
    const json_t *msgs = json_object_get(task, "messages");
    const char *answer = json_string_value(json_object_get(task, "answer"));
    const json_t *give_up = json_object_get(task, "give_up");
    if (!json_is_array(msgs) || json_array_size(msgs) < 2 || !answer || !json_is_boolean(give_up))
        return err_set("a task needs 'messages' (an array of at least 2 turns), 'answer' (a "
                       "string) and 'give_up' (a boolean); see retort agent make-data");
    const char *role, *content, *query = NULL, *gold_final = NULL;
    Context c = {0};
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        if (gold_turn(msgs, i, &role, &content) != 0) {
            ctx_free(&c);
            return -1;
        }
        if (i == 0) query = content;
        if (is_model_role(role)) {
            char *pred = speak(a, &c, role);
            agent_score_step(role, pred, content, m);
            free(pred);
        }
        if (!strcmp(role, "summarizer")) gold_final = content;
        ctx_turn(a, &c, role, content);
    }
    ctx_free(&c);
    if (!gold_final) return err_set("the gold trajectory has no summarizer turn");
    json_t *run = agent_run(a, query);
    const char *final = json_string_value(json_object_get(run, "final_answer"));
    int gave_up = !strcmp(json_string_value(json_object_get(run, "ended")), "give up");
    int ok = json_is_true(give_up) ? gave_up : !gave_up && agent_answer_in(final, answer);
    m->tasks++;
    m->success += ok;
    m->e2e_rouge_sum += rouge_l_f(final, gold_final);
    m->e2e_steps += json_integer_value(json_object_get(run, "steps"));
    json_object_set_new(run, "success", json_boolean(ok));
    if (trace) *trace = run;
    else json_decref(run);
    return 0;
}

int agent_eval_file(const Agent *a, const char *path, int limit, const char *predictions,
                    int quiet, AgentMetrics *m) {
    FILE *f = fopen(path, "r");
    if (!f) return err_set("cannot open %s: %s", path, strerror(errno));
    char tmp[4096] = "";
    if (predictions && snprintf(tmp, sizeof tmp, "%s.tmp", predictions) >= (int)sizeof tmp) {
        fclose(f);
        return err_set("path too long: %.200s...", predictions);
    }
    FILE *out = predictions ? fopen(tmp, "w") : NULL;
    if (predictions && !out) {
        fclose(f);
        return err_set("cannot create %s: %s", tmp, strerror(errno));
    }
    double t0 = now_seconds();
    char *line = NULL;
    size_t cap = 0;
    long lineno = 0;
    int rc = 0;
    int64_t total = progress_count_lines(path);
    if (limit > 0 && (total == 0 || total > limit)) total = limit;
    Progress *prog = progress_open("agent", "tasks", total, quiet);
    while (rc == 0 && getline(&line, &cap, f) >= 0 && (limit <= 0 || m->tasks < limit)) {
        lineno++;
        json_error_t jerr;
        json_t *task = json_loads(line, 0, &jerr);
        json_t *trace = NULL;
        if (!task) {
            rc = err_set("%s:%ld: invalid JSON: %s", path, lineno, jerr.text);
        } else if (agent_eval_task(a, task, m, out ? &trace : NULL) != 0) {
            rc = err_set("%s:%ld: %s", path, lineno, err_msg());
        } else if (out) {
            json_object_set(trace, "id", json_object_get(task, "id"));
            char *s = json_dumps(trace, JSON_COMPACT | JSON_PRESERVE_ORDER);
            fprintf(out, "%s\n", s);
            free(s);
        }
        json_decref(trace);
        json_decref(task);
        if (rc == 0) progress_add(prog, 1);
    }
    progress_close(prog, rc == 0);
    free(line);
    fclose(f);
    if (rc == 0 && m->tasks == 0) rc = err_set("%s: no tasks", path);
    if (out && rc == 0) rc = file_commit(out, tmp, predictions); /* removes tmp on failure */
    else if (out) file_discard(out, tmp);
    m->seconds += now_seconds() - t0;
    return rc;
}

static double ratio(double num, int64_t den) { return den > 0 ? num / (double)den : NAN; }

void agent_scores(const AgentMetrics *m, AgentScores *s) {
    s->planning_accuracy = ratio((double)m->plan_correct, m->plan_steps);
    s->action_em = ratio((double)m->action_em, m->call_steps);
    s->tool_name_accuracy = ratio((double)m->tool_name_correct, m->call_steps);
    s->hallucination_rate = ratio((double)m->hallucinated, m->call_steps);
    s->arg_f1 = ratio(m->arg_f1_sum, m->call_steps);
    s->rouge_l = ratio(m->rouge_sum, m->summary_steps);
    s->success_rate = ratio((double)m->success, m->tasks);
    s->e2e_rouge_l = ratio(m->e2e_rouge_sum, m->tasks);
    s->mean_steps = ratio((double)m->e2e_steps, m->tasks);
}

void agent_print(const char *label, const AgentMetrics *m) {
    AgentScores s;
    agent_scores(m, &s);
    printf("agent: %s: %lld tasks in %.1f s\n", label, (long long)m->tasks, m->seconds);
    printf("  step-level (gold context): plan acc %.2f%% (%lld steps)  action EM %.2f%%  "
           "tool name %.2f%%  hallucination %.2f%%  arg F1 %.4f (%lld calls)  ROUGE-L %.4f\n",
           100 * s.planning_accuracy, (long long)m->plan_steps, 100 * s.action_em,
           100 * s.tool_name_accuracy, 100 * s.hallucination_rate, s.arg_f1,
           (long long)m->call_steps, s.rouge_l);
    printf("  end to end: success %.2f%%  final-answer ROUGE-L %.4f  %.2f planner steps/task\n",
           100 * s.success_rate, s.e2e_rouge_l, s.mean_steps);
}

static json_t *real_or_null(double x) { return isnan(x) ? json_null() : json_real(x); }

int agent_write_json(const AgentMetrics *m, const char *path) {
    AgentScores s;
    agent_scores(m, &s);
    json_t *j = json_object();
    json_object_set_new(j, "tasks", json_integer(m->tasks));
    json_object_set_new(j, "planning_accuracy", real_or_null(s.planning_accuracy));
    json_object_set_new(j, "action_em", real_or_null(s.action_em));
    json_object_set_new(j, "tool_name_accuracy", real_or_null(s.tool_name_accuracy));
    json_object_set_new(j, "hallucination_rate", real_or_null(s.hallucination_rate));
    json_object_set_new(j, "arg_f1", real_or_null(s.arg_f1));
    json_object_set_new(j, "rouge_l", real_or_null(s.rouge_l));
    json_object_set_new(j, "success_rate", real_or_null(s.success_rate));
    json_object_set_new(j, "e2e_rouge_l", real_or_null(s.e2e_rouge_l));
    json_object_set_new(j, "mean_steps", real_or_null(s.mean_steps));
    json_object_set_new(j, "plan_steps", json_integer(m->plan_steps));
    json_object_set_new(j, "call_steps", json_integer(m->call_steps));
    json_object_set_new(j, "summary_steps", json_integer(m->summary_steps));
    json_object_set_new(j, "seconds", json_real(m->seconds));
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    int rc = write_file_atomic(path, text, strlen(text));
    free(text);
    return rc;
}
