/* cli/cmd_pairs.c — `retort pairs`: preference pairs from a model's own
 * samples (or from completions written earlier), scored by exact match, by
 * the likelihood of the gold answer (COLLATE), or by an external file. The
 * work is in eval/pairs.c; this file parses options and loads models. */
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/tokenizer.h"
#include "eval/answer.h"
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
            "instances (COLLATE): every --model and every --instance samples its own\n"
            "completions of each prompt; all of them form one pool, deduplicated (the\n"
            "first instance's copy stays), scored and paired as above. --dump records\n"
            "each completion's instance (\"from\", an index into \"instances\"). The\n"
            "first instance's model is the default scorer and gives the tokenizer.\n"
            "  --instance DIR[:KEY=V,...]  DIR (empty: the first --model) with its own\n"
            "                   temperature, top-k, top-p, seed, samples (default: the\n"
            "                   command's options; seed: --seed + the instance's position,\n"
            "                   counting from 0 in command-line order)\n"
            "  e.g. --model sft --instance :temperature=0.3 --instance :temperature=1.2,seed=9\n\n"
            "options:\n"
            "  -m, --model DIR           the sampling model (and default scorer); repeat it\n"
            "                            for several instances (at most 16 in all)\n"
            "      --instance SPEC       one more instance (above)\n"
            "      --scorer-model DIR    the model that scores gold-likelihood\n"
            "  -i, --input FILE          JSONL: prompt and gold answer per line\n"
            "  -o, --out FILE.h5         the pref dataset (written to FILE.h5.tmp, renamed)\n"
            "      --tokenizer SPEC      (default: the model's own; bytes with no model)\n"
            "      --prompt-field NAME   (default: prompt)\n"
            "      --gold-field NAME     gold answer: a string or integer (default: answer)\n"
            "      --scorer NAME         exact, gold-likelihood or external (default: exact)\n"
            "      --answer-pattern RE   exact: regex whose first group is the answer (PCRE2)\n"
            "      --answer SPEC         exact, instead of --answer-pattern: an answer spec as\n"
            "                            retort eval --answer reads it (whole, regex:RE with\n"
            "                            the last match, last-number, option[:A-E]); the gold\n"
            "                            is read by the same spec\n"
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

/* One --model or --instance as given: the directory and the sampling options
 * it sets for itself. */
typedef struct {
    const char *spec;       /* as written */
    char dir[4096];         /* "" until resolved: the first --model */
    char label[8192];       /* the spec with its directory resolved */
    int has_temp, has_top_k, has_top_p, has_seed, has_samples;
    double temperature, top_p;
    int top_k, samples;
    uint64_t seed;
} InstanceSpec;

/* "DIR", or "DIR:key=value,..." (the last ':' followed by a key=value list);
 * an empty DIR stays "" for the first --model. -1 with the error set. */
static int instance_parse(const char *spec, InstanceSpec *is) {
    memset(is, 0, sizeof *is);
    is->spec = spec;
    const char *colon = strrchr(spec, ':');
    const char *opts = colon && strchr(colon, '=') ? colon + 1 : NULL;
    size_t dir_len = opts ? (size_t)(colon - spec) : strlen(spec);
    if (dir_len >= sizeof is->dir) return err_set("--instance '%s': the path is too long", spec);
    memcpy(is->dir, spec, dir_len);
    is->dir[dir_len] = '\0';
    if (!opts) return 0;
    char *list = xstrdup(opts), *save = NULL;
    int rc = 0;
    for (char *kv = strtok_r(list, ",", &save); kv && rc == 0; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            rc = err_set("--instance '%s': '%s' is not KEY=VALUE", spec, kv);
            break;
        }
        *eq = '\0';
        const char *key = kv, *val = eq + 1;
        char opt[64];
        snprintf(opt, sizeof opt, "--instance %s", key);
        if (!strcmp(key, "temperature")) {
            rc = cli_double(opt, val, 0, DBL_MAX, &is->temperature);
            is->has_temp = 1;
        } else if (!strcmp(key, "top-k") || !strcmp(key, "top_k")) {
            rc = cli_int(opt, val, 0, INT_MAX, &is->top_k);
            is->has_top_k = 1;
        } else if (!strcmp(key, "top-p") || !strcmp(key, "top_p")) {
            rc = cli_double(opt, val, -DBL_MAX, DBL_MAX, &is->top_p);
            is->has_top_p = 1;
        } else if (!strcmp(key, "samples")) {
            rc = cli_int(opt, val, 1, INT_MAX / 2, &is->samples);
            is->has_samples = 1;
        } else if (!strcmp(key, "seed")) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 10);
            if (!val[0] || *end || errno || val[0] == '-')
                rc = err_set("--instance '%s': seed '%s' is not a whole number >= 0", spec, val);
            is->seed = (uint64_t)v;
            is->has_seed = 1;
        } else {
            rc = err_set("--instance '%s': unknown key '%s'; expected temperature, top-k, top-p, "
                         "seed or samples",
                         spec, key);
        }
    }
    free(list);
    return rc;
}

/* The sampling options of instance i: the command's, with the spec's own, and
 * the seed --seed + i unless the spec sets one. -1 (error set) when they are
 * not valid sampling options. */
static int instance_gen(const GenerateJob *base, const InstanceSpec *is, int i, GenerateJob *g) {
    *g = *base;
    g->seed = base->seed + (uint64_t)i;
    if (is->has_temp) g->sample.temperature = is->temperature;
    if (is->has_top_k) g->sample.top_k = is->top_k;
    if (is->has_top_p) g->sample.top_p = is->top_p;
    if (is->has_samples) g->samples = is->samples;
    if (is->has_seed) g->seed = is->seed;
    if (sample_options_check(&g->sample) != 0)
        return err_set("--instance '%s': %s", is->spec, err_msg());
    return 0;
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
        {"dump", required_argument, 0, 'd'},           {"instance", required_argument, 0, 'I'},
        {"answer", required_argument, 0, 'W'},
        CLI_DEVICE_OPTIONS,
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
    const char *spec_text = NULL; /* --answer */
    InstanceSpec specs[PAIRS_MAX_INSTANCES];
    int n_specs = 0, n_models = 0, n_instance_opts = 0;
    int c, bad = 0, n_given = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:o:n:t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
        case 'I':
            if (n_specs == PAIRS_MAX_INSTANCES) {
                fprintf(stderr, "retort pairs: at most %d instances (--model and --instance "
                                "together)\n", PAIRS_MAX_INSTANCES);
                return 2;
            }
            if (c == 'm') {
                InstanceSpec *is = &specs[n_specs++];
                memset(is, 0, sizeof *is);
                is->spec = optarg;
                if (strlen(optarg) >= sizeof is->dir) {
                    fprintf(stderr, "retort pairs: --model path too long\n");
                    return 2;
                }
                strcpy(is->dir, optarg);
                if (!model_dir) model_dir = optarg;
                n_models++;
            } else {
                if (instance_parse(optarg, &specs[n_specs]) != 0) return cli_usage_fail("pairs");
                n_specs++;
                n_instance_opts++;
            }
            break;
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
        case 'W': spec_text = optarg; break;
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
    /* several instances: every --model and --instance; one --model alone is the
     * single sampler it always was */
    int multi = n_specs > 1 || n_instance_opts > 0;
    if (multi && job.read_completions) {
        fprintf(stderr, "retort pairs: several --model / --instance sample completions; they "
                        "do not go with --read-completions (give one --model as the scorer)\n");
        return 2;
    }
    for (int i = 0; i < n_specs; i++)
        if (!specs[i].dir[0]) {
            if (!model_dir) {
                fprintf(stderr, "retort pairs: --instance '%s' names no model and there is no "
                                "--model to take (write DIR:KEY=VALUE,...)\n",
                        specs[i].spec);
                return 2;
            }
            strcpy(specs[i].dir, model_dir);
        }
    for (int i = 0; i < n_specs; i++) /* ":seed=3" is reported as "DIR:seed=3" */
        snprintf(specs[i].label, sizeof specs[i].label, "%s%s",
                 specs[i].spec[0] == ':' ? specs[i].dir : "", specs[i].spec);
    if (!model_dir && n_specs > 0) model_dir = specs[0].dir; /* only --instance given */
    if (!job.read_completions && !model_dir) {
        fprintf(stderr, "retort pairs: --model DIR is required to sample (or give "
                        "--read-completions)\n");
        return 2;
    }
    if (sample_options_check(&job.gen.sample) != 0) return cli_usage_fail("pairs");
    if (spec_text && (job.scorer != SCORER_EXACT || job.answer_pattern)) {
        fprintf(stderr, "retort pairs: --answer SPEC is the exact scorer's, instead of "
                        "--answer-pattern (give one of them, with --scorer exact)\n");
        return 2;
    }
    for (int i = 0; i < n_specs; i++) { /* an instance's own options, before any loading */
        GenerateJob g;
        if (instance_gen(&job.gen, &specs[i], i, &g) != 0) return cli_usage_fail("pairs");
    }
    AnswerSpec *answer_spec = NULL;
    if (spec_text && !(answer_spec = answer_spec_parse(spec_text))) return cli_usage_fail("pairs");
    job.answer_spec = answer_spec;
    const Backend *be = cli_backend(&dev);
    if (!be) {
        answer_spec_free(answer_spec);
        return cli_fail("pairs");
    }
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
    /* the instances: each directory loaded once (the first is the sampler) */
    PairsInstance insts[PAIRS_MAX_INSTANCES];
    GPT *loaded[PAIRS_MAX_INSTANCES] = {0};
    int n_loaded = 0;
    if (rc == 0 && multi) {
        int min_ctx = gpt_context_len(gpt_config(sampler));
        for (int i = 0; i < n_specs && rc == 0; i++) {
            GPT *m = NULL;
            if (!strcmp(specs[i].dir, model_dir)) m = sampler;
            for (int j = 0; j < i && !m; j++)
                if (!strcmp(specs[j].dir, specs[i].dir)) m = insts[j].model;
            if (!m) {
                if (!(m = model_load_hf(specs[i].dir, be)) ||
                    model_tokenizer_check(specs[i].dir, gpt_config(m)->vocab_size, tok) != 0) {
                    rc = err_set("instance %d (%s): %s", i, specs[i].label, err_msg());
                    gpt_free(m);
                    break;
                }
                gpt_set_train_mode(m, 0);
                loaded[n_loaded++] = m;
            }
            int ctx = gpt_context_len(gpt_config(m));
            min_ctx = ctx < min_ctx ? ctx : min_ctx;
            insts[i].model = m;
            insts[i].label = specs[i].label;
        }
        if (rc == 0 && !n_given)
            job.gen.sample.max_new_tokens = cli_default_new_tokens(64, min_ctx);
        for (int i = 0; i < n_specs && rc == 0; i++)
            rc = instance_gen(&job.gen, &specs[i], i, &insts[i].gen);
        job.instances = insts;
        job.n_instances = n_specs;
    }
    if (sampler) gpt_set_train_mode(sampler, 0);
    if (scorer) gpt_set_train_mode(scorer, 0);
    PairsStats st;
    if (rc == 0)
        rc = pairs_build(job.read_completions || multi ? NULL : sampler, scorer, tok, &job, &st);
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
        for (int i = 0; i < job.n_instances; i++) {
            const PairsInstanceStats *is = &st.instance[i];
            const GenerateJob *g = &job.instances[i].gen;
            printf("  instance %d %s (temperature %g, top-k %d, top-p %g, seed %llu, samples %d): "
                   "%lld completions, %lld distinct, mean score %.4f, chosen %lld, rejected "
                   "%lld\n",
                   i, job.instances[i].label, g->sample.temperature, g->sample.top_k,
                   g->sample.top_p, (unsigned long long)g->seed, g->samples,
                   (long long)is->completions, (long long)is->distinct,
                   is->distinct ? is->score_sum / (double)is->distinct : 0.0,
                   (long long)is->chosen, (long long)is->rejected);
        }
    }
    for (int i = 0; i < n_loaded; i++) gpt_free(loaded[i]);
    answer_spec_free(answer_spec);
    chat_prompt_close(&cp);
    if (scorer && scorer != sampler) gpt_free(scorer);
    gpt_free(sampler);
    tokenizer_free(tok);
    return rc == 0 ? 0 : cli_fail("pairs");
}
