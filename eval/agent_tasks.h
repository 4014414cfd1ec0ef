/* eval/agent_tasks.h — synthetic tool-use tasks with gold trajectories in the
 * α-UMi format, for `retort agent make-data` and the GLPFT experiment.
 *
 * A task is one JSON object (one JSONL line):
 *   {"id": "test-000007", "kind": "lookup_calc", "query": "...",
 *    "answer": "502.8", "give_up": false,
 *    "messages": [{"role": "user", "content": QUERY},
 *                 {"role": "planner", "content": RATIONALE "\nNext: caller"},
 *                 {"role": "caller", "content": "Action: lookup_table\n"
 *                                               "Action Input: {\"table\":...}"},
 *                 {"role": "observation", "content": "125.7"},
 *                 {"role": "planner", "content": "...\nNext: caller"}, ...
 *                 {"role": "planner", "content": "...\nNext: conclusion"},
 *                 {"role": "summarizer", "content": FINAL ANSWER}]}
 * The planner's last line is "Next: caller", "Next: conclusion" (α-UMi's
 * word) or "Next: give up"; every caller turn is followed by the observation the tool environment
 * (eval/toolenv.h) returns for it; the summarizer always ends the trajectory.
 * `answer` is the fact the final answer must state ("" when the right outcome
 * is giving up, give_up true). Action Input is compact JSON with the keys in
 * the order the tool documents them.
 *
 * Kinds: calc (one calculator call), convert (convert_units), lookup
 * (lookup_table), lookup_calc (a lookup, then the calculator on its result),
 * moons_sum (two lookups, then the calculator), missing_key (a lookup that
 * fails, then give up) and unsupported (no tool fits: give up at once).
 * Everything is drawn from an Rng, so (seed, split, count) fixes the data. */
#ifndef RETORT_AGENT_TASKS_H
#define RETORT_AGENT_TASKS_H

#include <jansson.h>
#include <stdint.h>

#include "util/util.h"

/* One task (a new reference; json_decref it). id names it in the output. */
json_t *agent_task_make(Rng *r, const char *id);

typedef struct {
    const char *out_dir;       /* writes train.jsonl, val.jsonl, test.jsonl here */
    uint64_t seed;
    int n_train, n_val, n_test;
} TaskGenOptions;

/* 0, or -1 with the error set. Split s uses the generator seeded with
 * seed * 3 + s, so changing one split's size leaves the others alone. */
int agent_make_data(const TaskGenOptions *o);

#endif
