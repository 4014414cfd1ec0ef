/* cli/cmd_explain.c — `retort explain`: explanations from a model by chain of
 * thought, rationalization or CROP, judged by an answer spec; and `retort
 * explain build`: the multi-task sft JSONL of MT-CoT and COLLATE made from
 * them. The work is in eval/explain.c and eval/explain_build.c; this file
 * parses options and loads the model. */
#include <float.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/tokenizer.h"
#include "eval/answer.h"
#include "eval/explain.h"
#include "model/model_io.h"
#include "util/util.h"

static void usage_explain(FILE *f) {
    fprintf(f,
            "usage: retort explain --model DIR --input Q.jsonl --out EXPL.jsonl [options]\n"
            "       retort explain build --input EXPL.jsonl --out SFT.jsonl [--tasks LIST] "
            "[options]\n\n"
            "For each JSONL line {\"question\": ..., \"answer\": ...}, the model writes\n"
            "--samples explanations (MT-CoT, Li et al. 2022):\n"
            "  cot          the cot template with the question; the model explains and\n"
            "               ends with its answer [default]\n"
            "  rationalize  the rationalize template shows the gold answer too; the model\n"
            "               explains it\n"
            "  crop         chain of thought; a sample whose answer is not the gold one is\n"
            "               replaced by the rationalization of the same sample index\n"
            "Templates replace {question} and {answer}; TEXT or @FILE. Defaults:\n"
            "  cot          \"Q: {question}\\nA: Let's think step by step.\"\n"
            "  rationalize  \"Q: {question}\\nThe correct answer is {answer}. Explain why.\\n"
            "A: Let's think step by step.\"\n"
            "Each explanation's answer is found by --answer SPEC (whole, regex:RE with the\n"
            "last match's first group, last-number, option[:A-E]; as retort eval reads it)\n"
            "and compared with the gold answer read by the same spec. Default spec:\n"
            "  " EXPLAIN_ANSWER_SPEC "\n"
            "(the last \"the answer is X\", X up to a final period and the end of its line).\n\n"
            "Output: one line per explanation, {\"line\", \"sample\", \"question\", \"answer\",\n"
            "\"explanation\", \"extracted\" (null when none), \"correct\", \"mode\" (cot or\n"
            "rationalize: the prompt that wrote it)}, written to OUT.tmp and renamed.\n\n"
            "options:\n"
            "  -m, --model DIR           the model that explains\n"
            "  -i, --input FILE          JSONL: a question and a gold answer per line\n"
            "  -o, --out FILE            the explanations JSONL\n"
            "      --mode NAME           cot, rationalize or crop (default cot)\n"
            "      --cot-template T      TEXT or @FILE with {question}, no {answer}\n"
            "      --rationalize-template T  TEXT or @FILE with {question} and {answer}\n"
            "      --answer SPEC         how the answer is found (default above)\n"
            "      --keep-correct        write only explanations whose answer is the gold one\n"
            "      --question-field NAME (default: question)\n"
            "      --answer-field NAME   gold answer, a string or integer (default: answer)\n"
            "      --tokenizer SPEC      (default: the model's own)\n"
            "      --samples N           explanations per question and mode (default 1)\n"
            "  -n, --max-new-tokens N    (default 128, or half the model's context if less)\n"
            "  -t, --temperature X       0 = greedy (default 0)\n"
            "      --top-k K             (default 0 = off)\n"
            "      --top-p P             (default 1 = off)\n"
            "      --stop STR            end an explanation where STR appears (repeatable)\n"
            "      --seed S              sampling seed (default 1337)\n"
            CLI_CONTEXT_HELP
            CLI_CHAT_HELP
            CLI_DEVICE_HELP
            "  -q, --quiet               no report\n"
            "  -h, --help                this help\n\n"
            "The report counts the chains of thought and the rationalizations by their\n"
            "answer (correct, wrong, none found), and the explanations written and dropped.\n"
            "See `retort explain build --help` for the training data.\n");
}

static void usage_build(FILE *f) {
    fprintf(f,
            "usage: retort explain build --input EXPL.jsonl --out SFT.jsonl [options]\n\n"
            "Explanation JSONL (question, answer, explanation; `retort explain` writes it)\n"
            "into sft JSONL {\"prompt\", \"completion\", \"task\"} for\n"
            "`retort data build --schema sft --task-field task`, one line per input line\n"
            "and task, in --tasks order. Q question, A answer, E explanation, P the task's\n"
            "prefix, S --separator, J --answer-joiner:\n"
            "  answer            prompt P+Q+S        completion A      (once per question\n"
            "                                                           and answer)\n"
            "  explanation       prompt P+Q+S        completion E+J+A  (MT-CoT: the\n"
            "                    explanation, then the answer; E alone with\n"
            "                    --explanation-only, MT-Re)\n"
            "  rationale         prompt P+Q+S        completion E      (COLLATE)\n"
            "  rationale-answer  prompt P+Q+S+E+J    completion A      (COLLATE)\n"
            "MT-CoT: --tasks answer,explanation [default]; COLLATE's three modes:\n"
            "--tasks answer,rationale,rationale-answer. Train with per-task weights, e.g.\n"
            "objective.task_weights: {answer: 0.5, explanation: 0.5} (the paper's alpha).\n\n"
            "options:\n"
            "  -i, --input FILE          explanation JSONL\n"
            "  -o, --out FILE            sft JSONL (written to FILE.tmp, renamed)\n"
            "      --tasks LIST          comma-separated task names (above)\n"
            "      --prefix TASK=TEXT    a task's prefix (repeatable). Defaults: answer\n"
            "                            \"[answer] \", explanation \"[explain] \", rationale\n"
            "                            \"[rationale] \", rationale-answer: the rationale\n"
            "                            prefix, given or default (the rationale prompt:\n"
            "                            `retort pairs --scorer gold-likelihood\n"
            "                            --answer-prefix J` scores what it trains)\n"
            "      --separator TEXT      after the question (default \"\\n\")\n"
            "      --answer-joiner TEXT  between explanation and answer (default\n"
            "                            \"\\nAnswer: \")\n"
            "      --explanation-only    explanation task: E alone, without J + A\n"
            "      --only-correct        skip lines whose \"correct\" is false\n"
            "      --question-field NAME (default: question)\n"
            "      --answer-field NAME   (default: answer; a string or integer)\n"
            "      --explanation-field N (default: explanation)\n"
            "      --task-field NAME     the output's task field (default: task)\n"
            "  -q, --quiet               no report\n"
            "  -h, --help                this help\n");
}

static int cmd_explain_build(int argc, char **argv) {
    static const struct option opts[] = {
        {"input", required_argument, 0, 'i'},        {"out", required_argument, 0, 'o'},
        {"tasks", required_argument, 0, 'T'},        {"prefix", required_argument, 0, 'P'},
        {"separator", required_argument, 0, 'S'},    {"answer-joiner", required_argument, 0, 'J'},
        {"explanation-only", no_argument, 0, 'e'},   {"only-correct", no_argument, 0, 'c'},
        {"question-field", required_argument, 0, 'Q'}, {"answer-field", required_argument, 0, 'A'},
        {"explanation-field", required_argument, 0, 'E'},
        {"task-field", required_argument, 0, 'K'},   {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    ExplainBuildJob job = {0};
    const char *tasks = "answer,explanation";
    int quiet = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'i': job.input = optarg; break;
        case 'o': job.output = optarg; break;
        case 'T': tasks = optarg; break;
        case 'P': {
            const char *eq = strchr(optarg, '=');
            char name[64];
            ExplainTask t;
            if (!eq || (size_t)(eq - optarg) >= sizeof name) {
                fprintf(stderr, "retort explain build: --prefix '%s' is not TASK=TEXT\n", optarg);
                return 2;
            }
            memcpy(name, optarg, (size_t)(eq - optarg));
            name[eq - optarg] = '\0';
            if (explain_task_from_name(name, &t) != 0) return cli_usage_fail("explain build");
            job.prefix[t] = eq + 1;
            break;
        }
        case 'S': job.separator = optarg; break;
        case 'J': job.answer_joiner = optarg; break;
        case 'e': job.explanation_only = 1; break;
        case 'c': job.only_correct = 1; break;
        case 'Q': job.question_field = optarg; break;
        case 'A': job.answer_field = optarg; break;
        case 'E': job.explanation_field = optarg; break;
        case 'K': job.task_field = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage_build(stdout); return 0;
        default: usage_build(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "retort explain build: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!job.input || !job.output) {
        fprintf(stderr, "retort explain build: --input and --out are required (see --help)\n");
        return 2;
    }
    if (explain_tasks_parse(tasks, &job) != 0) return cli_usage_fail("explain build");
    ExplainBuildStats st;
    if (explain_build(&job, &st) != 0) return cli_fail("explain build");
    if (!quiet) {
        printf("explain build: %lld lines ->", (long long)st.lines);
        for (int i = 0; i < job.n_tasks; i++)
            printf("%s %lld %s", i ? "," : "", (long long)st.written[job.tasks[i]],
                   explain_task_name(job.tasks[i]));
        printf(" examples in %s\n", job.output);
        printf("  %lld answer examples not repeated, %lld lines skipped as incorrect\n",
               (long long)st.repeated_answers, (long long)st.skipped_incorrect);
    }
    return 0;
}

/* A template option's value: the text, or the contents of FILE for "@FILE"
 * (a new string in *owned). NULL with the error set when FILE is unreadable. */
static const char *template_arg(const char *opt, const char *value, char **owned) {
    if (value[0] != '@') return value;
    size_t len;
    free(*owned);
    *owned = read_file(value + 1, &len);
    if (!*owned) err_set("%s %s: cannot read %s", opt, value, value + 1);
    return *owned;
}

int cmd_explain(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "build")) return cmd_explain_build(argc - 1, argv + 1);
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},          {"input", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},            {"mode", required_argument, 0, 'M'},
        {"cot-template", required_argument, 0, 'C'},
        {"rationalize-template", required_argument, 0, 'R'},
        {"answer", required_argument, 0, 'a'},         {"keep-correct", no_argument, 0, 'K'},
        {"question-field", required_argument, 0, 'Q'}, {"answer-field", required_argument, 0, 'A'},
        {"tokenizer", required_argument, 0, 'T'},      {"samples", required_argument, 0, 'N'},
        {"max-new-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},          {"top-p", required_argument, 0, 'u'},
        {"stop", required_argument, 0, 'X'},           {"seed", required_argument, 0, 's'},
        {"quiet", no_argument, 0, 'q'},                {"help", no_argument, 0, 'h'},
        CLI_DEVICE_OPTIONS,                            CLI_CONTEXT_OPTIONS,
        CLI_CHAT_OPTIONS,                              {0, 0, 0, 0}};
    ExplainJob job = {0};
    CliDevice dev = {0};
    CliChat chat = {0};
    job.gen.sample = (SampleOptions){128, 0.0, 0, 1.0, -1, NULL, NULL};
    job.gen.samples = 1;
    job.gen.seed = 1337;
    job.gen.quiet = 1;
    const char *model_dir = NULL, *tok_spec = NULL, *spec_text = EXPLAIN_ANSWER_SPEC;
    char *cot_owned = NULL, *rat_owned = NULL;
    int c, bad = 0, n_given = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:o:n:t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'i': job.input = optarg; break;
        case 'o': job.output = optarg; break;
        case 'M': bad = explain_mode_from_name(optarg, &job.mode); break;
        case 'C':
            bad = !(job.cot_template = template_arg("--cot-template", optarg, &cot_owned));
            break;
        case 'R':
            bad = !(job.rationalize_template =
                        template_arg("--rationalize-template", optarg, &rat_owned));
            break;
        case 'a': spec_text = optarg; break;
        case 'K': job.keep_correct = 1; break;
        case 'Q': job.question_field = optarg; break;
        case 'A': job.answer_field = optarg; break;
        case 'T': tok_spec = optarg; break;
        case 'N': bad = cli_int("--samples", optarg, 1, INT_MAX / 2, &job.gen.samples); break;
        case 'n':
            bad = cli_int("--max-new-tokens", optarg, 1, INT_MAX / 2,
                          &job.gen.sample.max_new_tokens);
            n_given = 1;
            break;
        case 't':
            bad = cli_double("--temperature", optarg, 0, DBL_MAX, &job.gen.sample.temperature);
            break;
        case 'k': bad = cli_int("--top-k", optarg, 0, INT_MAX, &job.gen.sample.top_k); break;
        case 'u':
            bad = cli_double("--top-p", optarg, -DBL_MAX, DBL_MAX, &job.gen.sample.top_p);
            break;
        case 'X':
            if (job.gen.n_stop == GENERATE_MAX_STOPS || !optarg[0]) {
                bad = err_set("--stop: at most %d strings, none empty", GENERATE_MAX_STOPS);
                break;
            }
            job.gen.stop[job.gen.n_stop++] = optarg;
            break;
        case 's': job.gen.seed = (uint64_t)strtoull(optarg, NULL, 10); break;
        case CLI_OPT_TRUNCATE:
            bad = truncate_prompt_from_name(optarg, &job.gen.truncate_prompt);
            break;
        case CLI_OPT_CLAMP: job.gen.clamp_new_tokens = 1; break;
        case CLI_OPT_DEVICE: dev.device = optarg; break;
        case CLI_OPT_THREADS: dev.threads = optarg; break;
        case CLI_OPT_CHAT: chat.on = 1; break;
        case CLI_OPT_CHAT_TEMPLATE: chat.path = optarg; break;
        case 'q': job.quiet = 1; break;
        case 'h': usage_explain(stdout); return 0;
        default: usage_explain(stderr); return 2;
        }
        if (bad) {
            free(cot_owned);
            free(rat_owned);
            return cli_usage_fail("explain");
        }
    }
    int rc = 0;
    if (optind < argc) {
        fprintf(stderr, "retort explain: unexpected argument '%s'\n", argv[optind]);
        rc = 2;
    } else if (!model_dir || !job.input || !job.output) {
        fprintf(stderr, "retort explain: --model, --input and --out are required (see --help)\n");
        rc = 2;
    }
    AnswerSpec *spec = NULL;
    if (rc == 0 &&
        (sample_options_check(&job.gen.sample) != 0 ||
         !(spec = answer_spec_parse(spec_text)) ||
         explain_templates_check(job.mode,
                                 job.cot_template ? job.cot_template : EXPLAIN_COT_TEMPLATE,
                                 job.rationalize_template ? job.rationalize_template
                                                          : EXPLAIN_RATIONALIZE_TEMPLATE) != 0))
        rc = cli_usage_fail("explain");
    job.answer = spec;
    const Backend *be = NULL;
    GPT *m = NULL;
    Tokenizer *tok = NULL;
    ChatPrompt cp = {0};
    if (rc == 0 && !(be = cli_backend(&dev))) rc = -1;
    if (rc == 0 && !(m = model_load_hf(model_dir, be))) rc = -1;
    if (rc == 0 && !(tok = model_tokenizer_load(model_dir, tok_spec, gpt_config(m)->vocab_size)))
        rc = -1;
    if (rc == 0 && cli_chat_open(&chat, model_dir, tok, &cp) != 0) rc = -1;
    ExplainStats st;
    if (rc == 0) {
        if (cp.tmpl) job.gen.chat = &cp;
        job.gen.sample.eos_id = job.gen.chat ? cp.end_of_turn : tok->eos_id;
        if (!n_given)
            job.gen.sample.max_new_tokens =
                cli_default_new_tokens(128, gpt_context_len(gpt_config(m)));
        gpt_set_train_mode(m, 0);
        rc = explain_run(m, tok, &job, &st);
    }
    if (rc == 0 && !job.quiet) {
        printf("explain (%s): %lld questions -> %lld explanations in %s (%.1f s)%s\n",
               explain_mode_name(job.mode), (long long)st.lines, (long long)st.written,
               job.output, st.seconds, job.keep_correct ? ", only correct ones kept" : "");
        if (job.mode != EXPLAIN_RATIONALIZE)
            printf("  chain of thought: %lld correct, %lld wrong, %lld no answer\n",
                   (long long)st.cot_correct, (long long)st.cot_wrong, (long long)st.cot_none);
        if (job.mode != EXPLAIN_COT)
            printf("  rationalization%s: %lld correct, %lld wrong, %lld no answer\n",
                   job.mode == EXPLAIN_CROP ? " (replacing the others)" : "",
                   (long long)st.rat_correct, (long long)st.rat_wrong, (long long)st.rat_none);
        printf("  kept %lld, dropped %lld (answer spec %s)\n", (long long)st.written,
               (long long)st.dropped, answer_spec_text(spec));
    }
    chat_prompt_close(&cp);
    gpt_free(m);
    tokenizer_free(tok);
    answer_spec_free(spec);
    free(cot_owned);
    free(rat_owned);
    if (rc == 2) return 2; /* a usage error, already reported */
    return rc == 0 ? 0 : cli_fail("explain");
}
