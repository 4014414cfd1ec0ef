/* eval/agent_tasks.c — the synthetic task generator (see agent_tasks.h).
 *
 * Every observation in a gold trajectory is produced by actually calling the
 * tool environment on the gold action, so the data can never disagree with
 * what `retort agent` will see at inference. The planner's rationales carry
 * forward what later turns need (the multiplier, the first lookup's value),
 * so a context cut from the left (max_len) still holds it. */
#include "eval/agent_tasks.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/toolenv.h"

static const char *pick(Rng *r, const char *const *xs, int n) { return xs[rng_below(r, (uint64_t)n)]; }
#define PICK(r, arr) pick(r, arr, (int)(sizeof arr / sizeof arr[0]))

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    if (vasprintf(&s, f, ap) < 0) s = NULL;
    va_end(ap);
    if (!s) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return s;
}

/* A trajectory under construction. */
typedef struct {
    json_t *messages;
} Traj;

static void turn(Traj *t, const char *role, char *content) { /* takes content */
    json_t *m = json_object();
    json_object_set_new(m, "role", json_string(role));
    json_object_set_new(m, "content", json_string(content));
    json_array_append_new(t->messages, m);
    free(content);
}

/* A caller turn with args (stolen), then the environment's observation;
 * returns the observation (free it). */
static char *call(Traj *t, const char *tool, json_t *args) {
    char *json = json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    turn(t, "caller", fmt("Action: %s\nAction Input: %s", tool, json));
    int ok;
    char *obs = toolenv_call(tool, json, &ok);
    turn(t, "observation", xstrdup(obs));
    free(json);
    json_decref(args);
    return obs;
}

static json_t *number(double x) {
    if (x == (double)(long long)x) return json_integer((long long)x);
    return json_real(x);
}

/* A random operand: mostly integers 2..99, sometimes one decimal place. */
static void operand(Rng *r, char *buf, size_t cap) {
    if (rng_below(r, 5) == 0)
        snprintf(buf, cap, "%d.%d", 1 + (int)rng_below(r, 50), 1 + (int)rng_below(r, 9));
    else
        snprintf(buf, cap, "%d", 2 + (int)rng_below(r, 98));
}

/* ---------------------------------------------------------------- kinds */

static char *task_calc(Rng *r, Traj *t, char **answer) {
    static const char ops[] = "+-*/";
    char a[32], b[32], c[32], expr[128];
    operand(r, a, sizeof a);
    operand(r, b, sizeof b);
    operand(r, c, sizeof c);
    char o1 = ops[rng_below(r, 4)], o2 = ops[rng_below(r, 3)];
    switch (rng_below(r, 3)) {
    case 0: snprintf(expr, sizeof expr, "%s %c %s", a, o1, b); break;
    case 1: snprintf(expr, sizeof expr, "%s %c %s %c %s", a, o1, b, o2, c); break;
    default: snprintf(expr, sizeof expr, "(%s %c %s) %c %s", a, o2, b, o1, c); break;
    }
    static const char *const asks[] = {"What is %s?", "Compute %s.", "Calculate %s."};
    char *query = fmt(PICK(r, asks), expr);
    turn(t, "user", xstrdup(query));
    turn(t, "planner", fmt("I will compute %s with the calculator.\nNext: caller", expr));
    json_t *args = json_object();
    json_object_set_new(args, "expression", json_string(expr));
    char *obs = call(t, "calculator", args);
    turn(t, "planner", fmt("The calculator gives %s.\nNext: conclusion", obs));
    turn(t, "summarizer", fmt("%s = %s.", expr, obs));
    *answer = obs;
    return query;
}

static char *task_convert(Rng *r, Traj *t, char **answer) {
    static const char *const pairs[][2] = {{"km", "mi"}, {"mi", "km"}, {"m", "ft"},
                                           {"ft", "m"},  {"kg", "lb"}, {"lb", "kg"},
                                           {"l", "gal"}, {"gal", "l"}, {"c", "f"},
                                           {"f", "c"}};
    int p = (int)rng_below(r, 10);
    const char *from = pairs[p][0], *to = pairs[p][1];
    double v = (double)(1 + rng_below(r, 300)) + (rng_below(r, 4) == 0 ? 0.5 : 0.0);
    char val[32];
    toolenv_format_number(v, val, sizeof val);
    char *query = rng_below(r, 2) ? fmt("Convert %s %s to %s.", val, from, to)
                                  : fmt("How many %s is %s %s?", to, val, from);
    turn(t, "user", xstrdup(query));
    turn(t, "planner", fmt("I will convert %s %s to %s.\nNext: caller", val, from, to));
    json_t *args = json_object();
    json_object_set_new(args, "value", number(v));
    json_object_set_new(args, "from", json_string(from));
    json_object_set_new(args, "to", json_string(to));
    char *obs = call(t, "convert_units", args);
    turn(t, "planner", fmt("The conversion gives %s %s.\nNext: conclusion", obs, to));
    turn(t, "summarizer", fmt("%s %s is %s %s.", val, from, obs, to));
    *answer = obs;
    return query;
}

typedef struct {
    const char *table, *column, *question; /* question has one %s: the key */
} Ask;

static const Ask lookup_asks[] = {
    {"countries", "capital", "What is the capital of %s?"},
    {"countries", "population", "What is the population of %s in millions?"},
    {"countries", "continent", "On which continent is %s?"},
    {"countries", "currency", "What currency does %s use?"},
    {"planets", "moons", "How many moons does %s have?"},
    {"planets", "diameter_km", "What is the diameter of %s in km?"},
    {"planets", "day_hours", "How many hours long is a day on %s?"},
};
#define N_ASKS ((int)(sizeof lookup_asks / sizeof lookup_asks[0]))

static json_t *lookup_args(const char *table, const char *key, const char *column) {
    json_t *args = json_object();
    json_object_set_new(args, "table", json_string(table));
    json_object_set_new(args, "key", json_string(key));
    json_object_set_new(args, "column", json_string(column));
    return args;
}

static char *task_lookup(Rng *r, Traj *t, char **answer) {
    const Ask *a = &lookup_asks[rng_below(r, N_ASKS)];
    const char *key = toolenv_table_key(a->table, (int)rng_below(r, (uint64_t)toolenv_table_rows(a->table)));
    char *query = fmt(a->question, key);
    turn(t, "user", xstrdup(query));
    turn(t, "planner", fmt("I will look up the %s of %s in the %s table.\nNext: caller", a->column,
                           key, a->table));
    char *obs = call(t, "lookup_table", lookup_args(a->table, key, a->column));
    turn(t, "planner", fmt("The table says %s.\nNext: conclusion", obs));
    turn(t, "summarizer", fmt("The %s of %s is %s.", a->column, key, obs));
    *answer = obs;
    return query;
}

static char *task_lookup_calc(Rng *r, Traj *t, char **answer) {
    const char *key = toolenv_table_key("countries", (int)rng_below(r, 16));
    int k = 2 + (int)rng_below(r, 8);
    char *query = fmt("What is %d times the population of %s in millions?", k, key);
    turn(t, "user", xstrdup(query));
    turn(t, "planner", fmt("I will look up the population of %s, then multiply it by %d.\n"
                           "Next: caller", key, k));
    char *pop = call(t, "lookup_table", lookup_args("countries", key, "population"));
    turn(t, "planner", fmt("%s has %s million people; now I multiply %s by %d.\nNext: caller",
                           key, pop, pop, k));
    json_t *args = json_object();
    char *expr = fmt("%s * %d", pop, k);
    json_object_set_new(args, "expression", json_string(expr));
    char *obs = call(t, "calculator", args);
    turn(t, "planner", fmt("The calculator gives %s.\nNext: conclusion", obs));
    turn(t, "summarizer", fmt("%d times the population of %s is %s million.", k, key, obs));
    free(pop);
    free(expr);
    *answer = obs;
    return query;
}

static char *task_moons_sum(Rng *r, Traj *t, char **answer) {
    int i = (int)rng_below(r, 8), j = (int)rng_below(r, 7);
    j += j >= i;
    const char *p1 = toolenv_table_key("planets", i), *p2 = toolenv_table_key("planets", j);
    char *query = fmt("How many moons do %s and %s have together?", p1, p2);
    turn(t, "user", xstrdup(query));
    turn(t, "planner", fmt("I will look up the moons of %s, then of %s.\nNext: caller", p1, p2));
    char *m1 = call(t, "lookup_table", lookup_args("planets", p1, "moons"));
    turn(t, "planner", fmt("%s has %s moons; now I look up %s.\nNext: caller", p1, m1, p2));
    char *m2 = call(t, "lookup_table", lookup_args("planets", p2, "moons"));
    turn(t, "planner", fmt("%s has %s and %s has %s moons; now I add them.\nNext: caller", p1, m1,
                           p2, m2));
    json_t *args = json_object();
    char *expr = fmt("%s + %s", m1, m2);
    json_object_set_new(args, "expression", json_string(expr));
    char *obs = call(t, "calculator", args);
    turn(t, "planner", fmt("Together they have %s moons.\nNext: conclusion", obs));
    turn(t, "summarizer", fmt("%s and %s have %s moons together.", p1, p2, obs));
    free(m1);
    free(m2);
    free(expr);
    *answer = obs;
    return query;
}

static char *task_missing_key(Rng *r, Traj *t, char **answer) {
    static const char *const lands[] = {"Atlantis", "Wakanda", "Narnia",  "Freedonia",
                                        "Genovia",  "Elbonia", "Latveria", "Ruritania"};
    static const char *const worlds[] = {"Vulcan", "Krypton", "Arrakis", "Tatooine", "Gallifrey"};
    const Ask *a = &lookup_asks[rng_below(r, N_ASKS)];
    const char *key = !strcmp(a->table, "countries") ? PICK(r, lands) : PICK(r, worlds);
    char *query = fmt(a->question, key);
    turn(t, "user", xstrdup(query));
    turn(t, "planner", fmt("I will look up the %s of %s in the %s table.\nNext: caller", a->column,
                           key, a->table));
    free(call(t, "lookup_table", lookup_args(a->table, key, a->column)));
    turn(t, "planner", fmt("The %s table has no row for %s.\nNext: give up", a->table, key));
    turn(t, "summarizer", fmt("Sorry, I could not find the %s of %s.", a->column, key));
    *answer = xstrdup("");
    return query;
}

static char *task_unsupported(Rng *r, Traj *t, char **answer) {
    static const char *const cities[] = {"Oslo", "Lima", "Tokyo", "Cairo", "Rome", "Hanoi"};
    static const char *const words[] = {"apple", "river", "window", "music", "friend"};
    char *query;
    switch (rng_below(r, 4)) {
    case 0: query = fmt("What will the weather be in %s tomorrow?", PICK(r, cities)); break;
    case 1: query = fmt("Translate the word '%s' into French.", PICK(r, words)); break;
    case 2: query = fmt("Book a table for %d in %s tonight.", 2 + (int)rng_below(r, 6),
                        PICK(r, cities)); break;
    default: query = fmt("Send an email to my friend in %s.", PICK(r, cities)); break;
    }
    turn(t, "user", xstrdup(query));
    turn(t, "planner", xstrdup("None of the tools can do this.\nNext: give up"));
    turn(t, "summarizer", xstrdup("Sorry, I cannot help with that using the available tools."));
    *answer = xstrdup("");
    return query;
}

typedef char *(*TaskFn)(Rng *, Traj *, char **);
static const struct {
    const char *kind;
    TaskFn make;
    int weight; /* out of 100 */
} kinds[] = {
    {"calc", task_calc, 24},          {"convert", task_convert, 20},
    {"lookup", task_lookup, 24},      {"lookup_calc", task_lookup_calc, 12},
    {"moons_sum", task_moons_sum, 8}, {"missing_key", task_missing_key, 6},
    {"unsupported", task_unsupported, 6},
};

json_t *agent_task_make(Rng *r, const char *id) {
    int draw = (int)rng_below(r, 100), k = 0;
    while (draw >= kinds[k].weight) draw -= kinds[k++].weight;
    Traj t = {json_array()};
    char *answer = NULL;
    char *query = kinds[k].make(r, &t, &answer);
    json_t *task = json_object();
    json_object_set_new(task, "id", json_string(id));
    json_object_set_new(task, "kind", json_string(kinds[k].kind));
    json_object_set_new(task, "query", json_string(query));
    json_object_set_new(task, "answer", json_string(answer));
    json_object_set_new(task, "give_up", json_boolean(answer[0] == '\0'));
    json_object_set_new(task, "messages", t.messages);
    free(query);
    free(answer);
    return task;
}

int agent_make_data(const TaskGenOptions *o) {
    static const char *const splits[3] = {"train", "val", "test"};
    const int counts[3] = {o->n_train, o->n_val, o->n_test};
    if (o->n_train < 0 || o->n_val < 0 || o->n_test < 0)
        return err_set("agent make-data: task counts must be >= 0");
    if (mkdir_p(o->out_dir) != 0) return -1;
    for (int s = 0; s < 3; s++) {
        char path[2048], tmp[2100], id[64];
        snprintf(path, sizeof path, "%s/%s.jsonl", o->out_dir, splits[s]);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "w");
        if (!f) return err_set("cannot create %s: %s", tmp, strerror(errno));
        Rng r;
        rng_seed(&r, o->seed * 3 + (uint64_t)s);
        for (int i = 0; i < counts[s]; i++) {
            snprintf(id, sizeof id, "%s-%06d", splits[s], i);
            json_t *task = agent_task_make(&r, id);
            char *line = json_dumps(task, JSON_PRESERVE_ORDER | JSON_COMPACT | JSON_ENSURE_ASCII);
            fprintf(f, "%s\n", line);
            free(line);
            json_decref(task);
        }
        if (file_commit(f, tmp, path) != 0) return -1;
    }
    return 0;
}
