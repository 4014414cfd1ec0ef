/* cli/cmd_pairs.c — `retort pairs`: preference pairs from a model's own
 * samples (or from completions written earlier), scored by exact match, by
 * the likelihood of the gold answer (COLLATE), or by an external file. The
 * work is in eval/pairs.c; this file parses options and loads models. */
#include <float.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/tokenizer.h"
#include "eval/pairs.h"
#include "model/checkpoint.h"
#include "model/model_io.h"
#include "util/util.h"

static void usage_pairs(FILE *f) {
    fprintf(f,
            "usage: retort pairs --model DIR --input FILE.jsonl --out PAIRS.h5 [options]\n"
            "       retort pairs --read-completions --input GEN.jsonl --scorer external "
            "--scores S.jsonl --out PAIRS.h5\n\n"
            "For each JSONL line, samples --samples completions of its prompt (or reads\n"
            "them from the line's \"completions\", as `retort generate --out x.jsonl` writes\n"
            "them), drops repeated texts, scores each completion and writes chosen/rejected\n"
            "pairs to a pref dataset (prompt without EOS; completions + EOS) for DPO.\n\n"
            "scorers (--scorer):\n"
            "  exact            1 if the answer in the completion equals the gold answer\n"
            "                   (--gold-field; both stripped), else 0. The answer is the first\n"
            "                   capture group of --answer-pattern (the whole match without a\n"
            "                   group; the whole completion without a pattern); no match = 0\n"
            "  gold-likelihood  mean log-prob of the gold answer's tokens after prompt +\n"
            "                   completion + --answer-prefix, under --scorer-model (default:\n"
            "                   the sampling model) — COLLATE's rationale score\n"
            "  external         one JSONL line per input line, {\"scores\": [x0, x1, ...]},\n"
            "                   one number per completion of that line (--scores FILE;\n"
            "                   needs --read-completions)\n\n"
            "pairing (--pairing):\n"
            "  best-worst       highest vs lowest score per prompt; skipped when they differ\n"
            "                   by no more than --margin (default 0: exact ties) [default]\n"
            "  all              every pair of completions whose scores differ by > --margin\n\n"
            "options:\n"
            "  -m, --model DIR           the sampling model (and default scorer)\n"
            "      --scorer-model DIR    the model that scores gold-likelihood\n"
            "  -i, --input FILE          JSONL: prompt and gold answer per line\n"
            "  -o, --out FILE.h5         the pref dataset (written to FILE.h5.tmp, renamed)\n"
            "      --tokenizer SPEC      (default: the model's own; bytes with no model)\n"
            "      --prompt-field NAME   (default: prompt)\n"
            "      --gold-field NAME     gold answer: a string or integer (default: answer)\n"
            "      --scorer NAME         exact, gold-likelihood or external (default: exact)\n"
            "      --answer-pattern RE   exact: regex whose first group is the answer (PCRE2)\n"
            "      --posix-regex         exact: the pattern is a POSIX extended regex\n"
            "      --answer-prefix TEXT  gold-likelihood: text between completion and answer\n"
            "      --gold-eos            gold-likelihood: also score EOS after the answer\n"
            "      --scores FILE         external: the scores JSONL\n"
            "      --read-completions    take completions from the input lines, don't sample\n"
            "      --completions-field N (default: completions)\n"
            "      --pairing NAME        best-worst or all (default: best-worst)\n"
            "      --margin M            minimum score difference, exclusive (default 0)\n"
            "      --samples N           completions sampled per prompt (default 4)\n"
            "  -n, --max-new-tokens N    (default 64, or half the model's context if less)\n"
            "  -t, --temperature X       (default 1.0)\n"
            "      --top-k K             (default 0 = off)\n"
            "      --top-p P             (default 1 = off)\n"
            "      --stop STR            end a completion where STR appears (repeatable)\n"
            CLI_CONTEXT_HELP
            CLI_CHAT_HELP
            "      --seed S              sampling seed (default 1337)\n"
            "      --dump FILE.jsonl     write each line's completions, scores and pairs\n"
            CLI_DEVICE_HELP
            "  -q, --quiet               no report\n"
            "  -h, --help                this help\n");
}

int cmd_pairs(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},          {"scorer-model", required_argument, 0, 'M'},
        {"input", required_argument, 0, 'i'},          {"out", required_argument, 0, 'o'},
        {"tokenizer", required_argument, 0, 'T'},      {"prompt-field", required_argument, 0, 'P'},
        {"gold-field", required_argument, 0, 'G'},     {"scorer", required_argument, 0, 'S'},
        {"answer-pattern", required_argument, 0, 'a'}, {"posix-regex", no_argument, 0, 'x'},
        {"answer-prefix", required_argument, 0, 'A'},  {"gold-eos", no_argument, 0, 'E'},
        {"scores", required_argument, 0, 'c'},         {"read-completions", no_argument, 0, 'r'},
        {"completions-field", required_argument, 0, 'C'}, {"pairing", required_argument, 0, 'p'},
        {"margin", required_argument, 0, 'g'},         {"samples", required_argument, 0, 'N'},
        {"max-new-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},          {"top-p", required_argument, 0, 'u'},
        {"stop", required_argument, 0, 'X'},           {"seed", required_argument, 0, 's'},
        {"dump", required_argument, 0, 'd'},           CLI_DEVICE_OPTIONS,
        {"quiet", no_argument, 0, 'q'},                {"help", no_argument, 0, 'h'},
        CLI_CONTEXT_OPTIONS,                           CLI_CHAT_OPTIONS,
        {0, 0, 0, 0}};
    CliChat chat = {0};
    PairsJob job = {0};
    CliDevice dev = {0};
    job.gen.sample = (SampleOptions){64, 1.0, 0, 1.0, -1, NULL, NULL};
    job.gen.samples = 4;
    job.gen.seed = 1337;
    job.gen.quiet = 1;
    const char *model_dir = NULL, *scorer_dir = NULL, *tok_spec = NULL;
    int c, bad = 0, n_given = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:o:n:t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'M': scorer_dir = optarg; break;
        case 'i': job.input = optarg; break;
        case 'o': job.output = optarg; break;
        case 'T': tok_spec = optarg; break;
        case 'P': job.prompt_field = optarg; break;
        case 'G': job.gold_field = optarg; break;
        case 'S':
            if (pair_scorer_from_name(optarg, &job.scorer) != 0) return cli_fail("pairs");
            break;
        case 'a': job.answer_pattern = optarg; break;
        case 'x': job.posix_regex = 1; break;
        case 'A': job.answer_prefix = optarg; break;
        case 'E': job.gold_eos = 1; break;
        case 'c': job.scores_path = optarg; break;
        case 'r': job.read_completions = 1; break;
        case 'C': job.completions_field = optarg; break;
        case 'p':
            if (pairing_from_name(optarg, &job.pairing) != 0) return cli_fail("pairs");
            break;
        case 'g': bad = cli_double("--margin", optarg, 0, DBL_MAX, &job.margin); break;
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
        case CLI_OPT_TRUNCATE:
            bad = truncate_prompt_from_name(optarg, &job.gen.truncate_prompt);
            break;
        case CLI_OPT_CLAMP: job.gen.clamp_new_tokens = 1; break;
        case 'X':
            if (job.gen.n_stop == GENERATE_MAX_STOPS || !optarg[0]) {
                fprintf(stderr, "retort pairs: at most %d non-empty --stop strings\n",
                        GENERATE_MAX_STOPS);
                return 2;
            }
            job.gen.stop[job.gen.n_stop++] = optarg;
            break;
        case 's': job.gen.seed = (uint64_t)strtoull(optarg, NULL, 10); break;
        case 'd': job.dump = optarg; break;
        case CLI_OPT_DEVICE: dev.device = optarg; break;
        case CLI_OPT_THREADS: dev.threads = optarg; break;
        case 'q': job.quiet = 1; break;
        case CLI_OPT_CHAT: chat.on = 1; break;
        case CLI_OPT_CHAT_TEMPLATE: chat.path = optarg; break;
        case 'h': usage_pairs(stdout); return 0;
        default: usage_pairs(stderr); return 2;
        }
        if (bad) return cli_usage_fail("pairs");
    }
    if (optind < argc) {
        fprintf(stderr, "retort pairs: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!job.input || !job.output) {
        fprintf(stderr, "retort pairs: --input and --out are required (see --help)\n");
        return 2;
    }
    if (job.scorer == SCORER_EXTERNAL) job.read_completions = 1;
    if (!job.read_completions && !model_dir) {
        fprintf(stderr, "retort pairs: --model DIR is required to sample (or give "
                        "--read-completions)\n");
        return 2;
    }
    if (sample_options_check(&job.gen.sample) != 0) return cli_usage_fail("pairs");
    const Backend *be = cli_backend(&dev);
    if (!be) return cli_fail("pairs");
    Tokenizer *tok = NULL;
    GPT *sampler = NULL, *scorer = NULL;
    int rc = 0;
    if (model_dir && !(job.read_completions && job.scorer != SCORER_GOLD_LIKELIHOOD) &&
        !(sampler = model_load_hf(model_dir, be)))
        rc = -1;
    if (rc == 0 && job.scorer == SCORER_GOLD_LIKELIHOOD) {
        if (scorer_dir) rc = (scorer = model_load_hf(scorer_dir, be)) ? 0 : -1;
        else scorer = sampler;
    }
    /* the tokenizer: the --model's own (else the scorer's), the same for both; bytes (or
     * --tokenizer) when completions are read and no model is named */
    const char *own_dir = model_dir ? model_dir : scorer ? scorer_dir : NULL;
    GPTConfig own_cfg;
    if (rc == 0 && own_dir)
        rc = hf_config_read(own_dir, &own_cfg) == 0 &&
                     (tok = model_tokenizer_load(own_dir, tok_spec, own_cfg.vocab_size))
                 ? 0
                 : -1;
    else if (rc == 0)
        rc = (tok = tokenizer_load(tok_spec ? tok_spec : "bytes")) ? 0 : -1;
    if (rc == 0 && scorer && scorer_dir && own_dir != scorer_dir)
        rc = model_tokenizer_check(scorer_dir, gpt_config(scorer)->vocab_size, tok);
    ChatPrompt cp = {0};
    if (rc == 0 && (chat.on || chat.path) && !own_dir && !chat.path)
        rc = err_set("--chat takes the template of --model (or --scorer-model); give "
                     "--chat-template PATH when completions are read without a model");
    else if (rc == 0)
        rc = cli_chat_open(&chat, own_dir, tok, &cp);
    if (rc == 0 && cp.tmpl) job.gen.chat = &cp;
    if (rc == 0) {
        job.gen.sample.eos_id = job.gen.chat ? cp.end_of_turn : tok->eos_id;
        if (!n_given && sampler)
            job.gen.sample.max_new_tokens =
                cli_default_new_tokens(64, gpt_context_len(gpt_config(sampler)));
    }
    if (sampler) gpt_set_train_mode(sampler, 0);
    if (scorer) gpt_set_train_mode(scorer, 0);
    PairsStats st;
    if (rc == 0) rc = pairs_build(job.read_completions ? NULL : sampler, scorer, tok, &job, &st);
    if (rc == 0 && !job.quiet) {
        static const char *const names[] = {"exact", "gold-likelihood", "external"};
        printf("pairs: %lld prompts, %lld completions (%lld duplicates dropped) -> %lld pairs "
               "in %s (%.1f s)\n",
               (long long)st.lines, (long long)st.completions, (long long)st.duplicates,
               (long long)st.pairs, job.output, st.seconds);
        printf("  scorer %s: mean score %.4f over %lld distinct completions", names[job.scorer],
               st.scored ? st.score_sum / (double)st.scored : 0.0, (long long)st.scored);
        if (job.scorer == SCORER_EXACT)
            printf(", %lld with no answer matched", (long long)st.unparsed);
        printf("\n  pairing %s (margin %g): %lld skipped ties, %lld prompts without a pair\n",
               job.pairing == PAIRING_ALL ? "all" : "best-worst", job.margin,
               (long long)st.skipped_ties, (long long)st.prompts_without_pair);
    }
    chat_prompt_close(&cp);
    if (scorer && scorer != sampler) gpt_free(scorer);
    gpt_free(sampler);
    tokenizer_free(tok);
    return rc == 0 ? 0 : cli_fail("pairs");
}
