/* fuzz/fuzz_agent_call.c — a model's tool call as the agent loop parses and
 * runs it (eval/agent.c, eval/toolenv.c), and the step scoring around it.
 *
 * The input is a model turn; a NUL byte, when present, ends it and starts the
 * gold turn it is scored against (else a fixed gold calculator call). The
 * turn goes through agent_parse_action and, when it names an action,
 * toolenv_call; through agent_parse_decision as a planner turn; and through
 * agent_score_step as planner, caller and summarizer. Checked beyond "no
 * crash, no leak": every call gets an observation, an error one exactly when
 * *ok is 0; argument F1 lies in [0, 1]; arguments equal themselves exactly
 * when they are a JSON object. */
#include <jansson.h>

#include "eval/agent.h"
#include "eval/toolenv.h"
#include "fuzz/fuzz.h"

static const char GOLD[] = "Action: calculator\nAction Input: {\"expression\": \"12.5 * (3 + 4)\"}";

static int is_object(const char *text) {
    json_t *v = json_loads(text, 0, NULL);
    int yes = json_is_object(v);
    json_decref(v);
    return yes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *pred = fuzz_cstr(data, size);
    size_t pred_len = strlen(pred);
    char *gold = pred_len < size ? fuzz_cstr(data + pred_len + 1, size - pred_len - 1)
                                 : xstrdup(GOLD);
    char *name, *args;
    if (agent_parse_action(pred, &name, &args) == 0) {
        FUZZ_CHECK(name && args, "parsed an action without name or arguments");
        int ok = -1;
        char *obs = toolenv_call(name, args, &ok);
        FUZZ_CHECK(obs && (ok == 0 || ok == 1), "no observation");
        FUZZ_CHECK(ok == (strncmp(obs, "Error: ", 7) != 0), "ok %d but observation '%s'", ok, obs);
        if (ok) FUZZ_CHECK(toolenv_has_tool(name), "an unknown tool '%s' answered", name);
        free(obs);
        double f1 = agent_arg_f1(args, gold);
        FUZZ_CHECK(f1 >= 0 && f1 <= 1, "argument F1 %g", f1);
        FUZZ_CHECK(agent_args_equal(args, args) == is_object(args),
                   "arguments '%s' equal themselves: %d", args, agent_args_equal(args, args));
        (void)agent_answer_in(pred, name);
        free(name);
        free(args);
    } else {
        FUZZ_CHECK(!name && !args, "no action, but a name or arguments");
    }
    (void)agent_decision_name(agent_parse_decision(pred));
    AgentMetrics m = {0};
    agent_score_step("planner", pred, gold, &m);
    agent_score_step("caller", pred, gold, &m);
    agent_score_step("summarizer", pred, gold, &m);
    FUZZ_CHECK(m.arg_f1_sum >= 0 && m.arg_f1_sum <= 1 && m.rouge_sum >= 0 && m.rouge_sum <= 1,
               "scores out of [0, 1]: F1 %g, ROUGE-L %g", m.arg_f1_sum, m.rouge_sum);
    free(pred);
    free(gold);
    return 0;
}
