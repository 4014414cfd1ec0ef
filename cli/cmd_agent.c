/* cli/cmd_agent.c — `retort agent`: synthetic tool-use data, the tool
 * environment by hand, and the α-UMi evaluation loop (eval/agent.h). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/build.h"
#include "eval/agent.h"
#include "eval/agent_tasks.h"
#include "eval/toolenv.h"
#include "model/model_io.h"
#include "util/util.h"

#define AGENT_ROLES "planner,caller,summarizer"

static void usage_agent(FILE *f) {
    fprintf(f,
            "usage: retort agent --model DIR --input test.jsonl [options]        (one model)\n"
            "       retort agent --planner DIR --caller DIR --summarizer DIR --input test.jsonl\n"
            "       retort agent make-data --out DIR [--train N] [--val N] [--test N] [--seed S]\n"
            "                              [--build] [--max-len N] [--tokenizer SPEC]\n"
            "       retort agent tool NAME 'JSON ARGUMENTS'\n\n"
            "The α-UMi loop over the built-in tools (calculator, convert_units, lookup_table):\n"
            "the planner decides (Next: caller / conclusion / give up), the caller emits\n"
            "\"Action: NAME\\nAction Input: {json}\", the tool's observation is appended, and\n"
            "the summarizer writes the final answer. Scores every task of --input (records of\n"
            "make-data) step by step on the gold context (planning accuracy, action EM, tool\n"
            "name accuracy, hallucination rate, argument F1, ROUGE-L) and end to end (success,\n"
            "final-answer ROUGE-L). Models must be trained on sft data built with the roles\n"
            "planner, caller, summarizer (make-data --build does that).\n\n"
            "options:\n"
            "      --model DIR           one checkpoint for every role (single-model baseline)\n"
            "      --planner DIR, --caller DIR, --summarizer DIR   one checkpoint per role\n"
            "  -i, --input FILE          tasks (JSONL from make-data)\n"
            "      --limit N             only the first N tasks\n"
            "      --max-steps N         planner turns per task end to end (default 6)\n"
            "  -n, --max-new-tokens N    per turn, at most half the context (default 128, or\n"
            "                            half the context if less)\n"
            "      --tokenizer SPEC      (default: the models' own, which they must share)\n"
            "      --metrics FILE        write the scores as JSON\n"
            "      --predictions FILE    write each task's end-to-end run (JSONL)\n"
            "      --label TEXT          the name printed with the scores\n"
            CLI_CHAT_HELP
            "                            (the planner's; each role's prompt, the α-UMi\n"
            "                            rendering up to its header, is the user turn)\n"
            CLI_DEVICE_HELP
            "  -q, --quiet               no progress\n\n"
            "make-data writes DIR/{train,val,test}.jsonl (deterministic in --seed; defaults\n"
            "2000 / 100 / 200 tasks, seed 1); --build also writes DIR/train.h5 and DIR/val.h5\n"
            "(sft, one example per planner, caller and summarizer turn, role column in that\n"
            "order; --max-len keeps the end of long contexts, default 0 = off).\n");
}

static int agent_make_data_cmd(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},      {"train", required_argument, 0, 'r'},
        {"val", required_argument, 0, 'v'},      {"test", required_argument, 0, 't'},
        {"seed", required_argument, 0, 's'},     {"build", no_argument, 0, 'b'},
        {"max-len", required_argument, 0, 'L'},  {"tokenizer", required_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    TaskGenOptions o = {NULL, 1, 2000, 100, 200};
    int build = 0, c;
    long long max_len = 0;
    const char *tok = "bytes";
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': o.out_dir = optarg; break;
        case 'r': o.n_train = atoi(optarg); break;
        case 'v': o.n_val = atoi(optarg); break;
        case 't': o.n_test = atoi(optarg); break;
        case 's': o.seed = (uint64_t)atoll(optarg); break;
        case 'b': build = 1; break;
        case 'L': max_len = atoll(optarg); break;
        case 'T': tok = optarg; break;
        case 'h': usage_agent(stdout); return 0;
        default: usage_agent(stderr); return 2;
        }
    }
    if (!o.out_dir) {
        fprintf(stderr, "retort agent make-data: --out DIR is required\n");
        return 2;
    }
    if (agent_make_data(&o) != 0) return cli_fail("agent make-data");
    printf("wrote %s/{train,val,test}.jsonl: %d / %d / %d tasks (seed %llu)\n", o.out_dir,
           o.n_train, o.n_val, o.n_test, (unsigned long long)o.seed);
    if (!build) return 0;
    static const char *const splits[2] = {"train", "val"};
    for (int s = 0; s < 2; s++) {
        if ((s == 0 ? o.n_train : o.n_val) == 0) continue;
        char in[2048], out[2048];
        snprintf(in, sizeof in, "%s/%s.jsonl", o.out_dir, splits[s]);
        snprintf(out, sizeof out, "%s/%s.h5", o.out_dir, splits[s]);
        BuildOptions b = {0};
        b.input = in;
        b.output = out;
        b.schema = SCHEMA_SFT;
        b.tokenizer = tok;
        b.train_roles = AGENT_ROLES;
        b.max_len = max_len;
        if (data_build(&b) != 0) return cli_fail("agent make-data");
    }
    return 0;
}

static int agent_tool_cmd(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: retort agent tool NAME 'JSON ARGUMENTS'\n");
        return 2;
    }
    int ok;
    char *obs = toolenv_call(argv[1], argv[2], &ok);
    printf("%s\n", obs);
    free(obs);
    return ok ? 0 : 1;
}

int cmd_agent(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "make-data")) return agent_make_data_cmd(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "tool")) return agent_tool_cmd(argc - 1, argv + 1);
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},      {"planner", required_argument, 0, 'P'},
        {"caller", required_argument, 0, 'C'},     {"summarizer", required_argument, 0, 'S'},
        {"input", required_argument, 0, 'i'},      {"limit", required_argument, 0, 'l'},
        {"max-steps", required_argument, 0, 'x'},  {"max-new-tokens", required_argument, 0, 'n'},
        {"tokenizer", required_argument, 0, 'T'},  {"metrics", required_argument, 0, 'M'},
        {"predictions", required_argument, 0, 'o'}, {"label", required_argument, 0, 'L'},
        CLI_DEVICE_OPTIONS,                        {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},             CLI_CHAT_OPTIONS,
        {0, 0, 0, 0}};
    CliChat chat = {0};
    const char *model = NULL, *dirs[3] = {NULL, NULL, NULL}, *input = NULL, *tok_spec = NULL;
    const char *metrics = NULL, *predictions = NULL, *label = NULL;
    int limit = 0, quiet = 0, c, bad = 0, n_given = 0;
    Agent a = {0};
    CliDevice dev = {0};
    a.max_new_tokens = 128;
    a.max_steps = 6;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:n:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'P': dirs[0] = optarg; break;
        case 'C': dirs[1] = optarg; break;
        case 'S': dirs[2] = optarg; break;
        case 'i': input = optarg; break;
        case 'l': bad = cli_int("--limit", optarg, 0, INT_MAX, &limit); break;
        case 'x': bad = cli_int("--max-steps", optarg, 1, 1 << 20, &a.max_steps); break;
        case 'n':
            bad = cli_int("--max-new-tokens", optarg, 1, INT_MAX / 2, &a.max_new_tokens);
            n_given = 1;
            break;
        case 'T': tok_spec = optarg; break;
        case 'M': metrics = optarg; break;
        case 'o': predictions = optarg; break;
        case 'L': label = optarg; break;
        case CLI_OPT_DEVICE: dev.device = optarg; break;
        case CLI_OPT_THREADS: dev.threads = optarg; break;
        case 'q': quiet = 1; break;
        case CLI_OPT_CHAT: chat.on = 1; break;
        case CLI_OPT_CHAT_TEMPLATE: chat.path = optarg; break;
        case 'h': usage_agent(stdout); return 0;
        default: usage_agent(stderr); return 2;
        }
        if (bad) return cli_usage_fail("agent");
    }
    int per_role = dirs[0] || dirs[1] || dirs[2];
    if (!input || (model && per_role) || (!model && !(dirs[0] && dirs[1] && dirs[2]))) {
        fprintf(stderr, "retort agent: give --input and either --model DIR or all three of "
                        "--planner, --caller, --summarizer (see retort agent --help)\n");
        return 2;
    }
    const Backend *be = cli_backend(&dev);
    if (!be) return cli_fail("agent");
    Tokenizer *tok = NULL;
    GPT *models[3] = {NULL, NULL, NULL};
    int rc = 0;
    if (!n_given) a.max_new_tokens = 128;
    for (int r = 0; r < (model ? 1 : 3) && rc == 0; r++) {
        const char *dir = model ? model : dirs[r];
        models[r] = model_load_hf(dir, be);
        if (!models[r]) {
            rc = -1;
            break;
        }
        const GPTConfig *g = gpt_config(models[r]);
        if (r == 0) /* the planner's tokenizer, which every role must share */
            rc = (tok = model_tokenizer_load(dir, tok_spec, g->vocab_size)) ? 0 : -1;
        else
            rc = model_tokenizer_check(dir, g->vocab_size, tok);
        /* a turn keeps at least half the context for the conversation (eval/agent.h) */
        if (rc == 0 && !n_given)
            a.max_new_tokens = cli_default_new_tokens(a.max_new_tokens, gpt_context_len(g));
        else if (rc == 0 && a.max_new_tokens > gpt_context_len(g) / 2)
            rc = err_set("--max-new-tokens %d: the model %s has a context of %d positions, and "
                         "a turn may use at most half of it (%d) so the conversation keeps the "
                         "rest; give -n %d or less",
                         a.max_new_tokens, dir, gpt_context_len(g), gpt_context_len(g) / 2,
                         gpt_context_len(g) / 2);
        gpt_set_train_mode(models[r], 0);
    }
    a.tok = tok;
    ChatPrompt cp = {0}; /* the planner's template serves every role */
    if (rc == 0) rc = cli_chat_open(&chat, model ? model : dirs[0], tok, &cp);
    if (cp.tmpl) a.chat = &cp;
    if (rc == 0) {
        a.planner = models[0];
        a.caller = model ? models[0] : models[1];
        a.summarizer = model ? models[0] : models[2];
        AgentMetrics m = {0};
        rc = agent_eval_file(&a, input, limit, predictions, quiet, &m);
        if (rc == 0) {
            char buf[4200];
            if (!label) {
                if (model) snprintf(buf, sizeof buf, "%s", model);
                else snprintf(buf, sizeof buf, "%s | %s | %s", dirs[0], dirs[1], dirs[2]);
                label = buf;
            }
            agent_print(label, &m);
            if (metrics) rc = agent_write_json(&m, metrics);
        }
    }
    chat_prompt_close(&cp);
    for (int r = 0; r < 3; r++) gpt_free(models[r]);
    tokenizer_free(tok);
    return rc == 0 ? 0 : cli_fail("agent");
}
