/* cli/cmd_correct.c — `retort correct build` (a corrector's sft examples from
 * source + candidates + gold) and `retort correct run` (a giant's candidates,
 * or a pool file's, rewritten by a corrector): LMCOR, eval/lmcor.h. */
#include <float.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/build.h"
#include "data/tokenizer.h"
#include "eval/lmcor.h"
#include "model/model_io.h"
#include "util/utf8.h"
#include "util/util.h"

#define FORMAT_HELP                                                                         \
    "corrector input (the same in build and run; \\n, \\t and \\\\ in these options are\n"      \
    "a newline, a tab and a backslash):\n"                                                  \
    "  {source}{sep}{prefix 1}{candidate 1}{sep}{prefix 2}{candidate 2}...{sep}{cue}\n"      \
    "and its target {target-prefix}{gold}; by default\n"                                    \
    "  {source}\\nCandidate 1: {c1}\\nCandidate 2: {c2}\\nCorrection:   ->   \" {gold}\"\n"    \
    "      --candidate-prefix S  before each candidate; {i} is its number from 1\n"         \
    "                            (default \"Candidate {i}: \")\n"                             \
    "      --separator S         after the source and after each candidate (default \\n)\n"  \
    "      --cue S               last, where the corrector starts writing (default\n"       \
    "                            \"Correction:\")\n"                                          \
    "      --target-prefix S     before the gold target (default \" \"); run removes it\n"    \
    "                            from the start of the correction\n"                        \
    "      --order MODE          generated (default: as in the pool, the giant's greedy\n"   \
    "                            output first) or shuffle (by --seed and the line's\n"      \
    "                            number in its file)\n"                                     \
    "      --seed N              shuffle seed; for run also the giant's and the\n"         \
    "                            corrector's sampling seed (default 1337)\n"                \
    "      --dedup               drop exact duplicate candidates, keeping the first\n"      \
    "                            (default: keep them; how often the giant wrote an\n"       \
    "                            output is evidence the corrector can weigh)\n"             \
    "      --max-candidates N    keep the first N candidates after --dedup, before the\n"   \
    "                            shuffle (default 0 = all)\n"

static void usage_correct(FILE *f) {
    fprintf(f,
            "usage: retort correct build --input FILE.jsonl --out FILE.jsonl|FILE.h5 [options]\n"
            "       retort correct run --giant DIR --input prompts.jsonl --corrector DIR\n"
            "                          --out FILE.jsonl [options]\n"
            "       retort correct run --pool FILE.jsonl --corrector DIR --out FILE.jsonl "
            "[options]\n\n"
            "LMCOR (Vernikos et al., EACL 2024): a small corrector reads a source and a large\n"
            "model's candidates and writes the target. `build` turns JSONL lines of source,\n"
            "candidates and gold into the corrector's training examples; `run` has the giant\n"
            "write its pool (greedy + --candidates samples), or reads one (--pool), and has the\n"
            "corrector rewrite it.\n\n"
            "input lines (both):\n"
            "      --prompt-field NAME   the source (default: prompt)\n"
            "      --candidates-field N  a field holding the candidates, a list of strings\n"
            "                            or one string (default: completions, as `retort\n"
            "                            generate --out x.jsonl` writes); repeatable: the\n"
            "                            fields' candidates are taken in order\n"
            "      --reference-field N   the gold target (build: default reference; run:\n"
            "                            scores the giant's greedy output and the correction\n"
            "                            against it)\n\n"
            FORMAT_HELP "\n"
            "build:\n"
            "  -i, --input FILE          JSONL of source, candidates, gold\n"
            "  -o, --out FILE            .jsonl: {\"prompt\": input, \"completion\": target} lines\n"
            "                            (for `retort data build --schema sft`); .h5: that\n"
            "                            sft dataset directly, with --tokenizer\n"
            "      --tokenizer SPEC      the corrector's tokenizer for .h5 (bytes, or a\n"
            "                            tokenizer.json / model directory)\n"
            "      --max-len N           .h5: as data build --max-len (default 0 = off)\n"
            "  -q, --quiet               no report\n\n"
            "run:\n"
            "      --giant DIR           the giant's checkpoint (writes the pool)\n"
            "      --giant-prompt-field N  the giant's prompt, when it is not the source\n"
            "                            (e.g. a few-shot prompt; default: --prompt-field)\n"
            "      --giant-chat          wrap the giant's prompt in its chat template and\n"
            "                            stop at its end-of-turn token (as generate --chat)\n"
            "      --giant-chat-template PATH  --giant-chat with this template\n"
            "  -i, --input FILE          with --giant: JSONL of sources\n"
            "      --pool FILE           instead of --giant: JSONL of sources and candidates\n"
            "                            (any model's outputs, from any toolkit)\n"
            "      --corrector DIR       the corrector's checkpoint\n"
            "  -o, --out FILE            JSONL: each input line + \"candidates\" (the pool, in\n"
            "                            its order), \"corrector_input\", \"correction\"\n"
            "      --candidates N        the giant's samples after its greedy output, as\n"
            "                            generate --candidates N draws them (default 4;\n"
            "                            0 = greedy only)\n"
            "  -t, --temperature X       their temperature (default 0.6)\n"
            "      --top-k K, --top-p P  their filters (default 0 = off, 1 = off; generate's\n"
            "                            top-k default is 40: give -k 0 there for the same pool)\n"
            "      --giant-max-new-tokens N  (default 64, or half the giant's context)\n"
            "  -n, --max-new-tokens N    the corrector's (default 64, or half its context)\n"
            "      --corrector-temperature X  0 = greedy (default)\n"
            "      --corrector-beams K   beam search for the correction (default 0 = off)\n"
            "      --stop STR            end the giant's and corrector's completions at STR\n"
            "                            (repeatable)\n"
            "      --giant-tokenizer SPEC, --corrector-tokenizer SPEC\n"
            "                            (default: each model's own; they may differ)\n"
            "      --answer SPEC         with --reference-field: also the accuracy of the\n"
            "                            answers SPEC reads (whole, regex:RE, last-number,\n"
            "                            option[:A-J]; as retort eval --answer), the gold\n"
            "                            read the same way\n"
            "      --metrics FILE        with --reference-field: the scores as JSON\n"
            CLI_CONTEXT_HELP
            CLI_DEVICE_HELP
            "  -q, --quiet               no report\n"
            "  -h, --help                this help\n");
}

/* The text of an option with \n, \t and \\ read as a newline, a tab and a
 * backslash (a new string); NULL with the error set for another escape or
 * text that is not UTF-8 (it goes into JSON). */
static char *unescape(const char *option, const char *s) {
    size_t n = strlen(s), k = 0;
    char *out = xmalloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[k++] = s[i];
            continue;
        }
        char e = s[i + 1];
        if (e == 'n' || e == 't' || e == '\\') {
            out[k++] = e == 'n' ? '\n' : e == 't' ? '\t' : '\\';
            i++;
        } else {
            free(out);
            err_set("%s '%s': unknown escape '\\%c' (write \\n, \\t or \\\\)", option, s,
                    e ? e : ' ');
            return NULL;
        }
    }
    out[k] = '\0';
    for (size_t i = 0; i < k;) {
        uint32_t cp;
        int len = utf8_decode((const unsigned char *)out + i, k - i, &cp);
        if (len <= 0) {
            free(out);
            err_set("%s: not UTF-8 text at byte %zu; the corrector's input is written as JSON",
                    option, i);
            return NULL;
        }
        i += (size_t)len;
    }
    return out;
}

enum {
    OPT_PROMPT_FIELD = 0x200, OPT_CANDIDATES_FIELD, OPT_REFERENCE_FIELD, OPT_PREFIX,
    OPT_SEPARATOR, OPT_CUE, OPT_TARGET_PREFIX, OPT_ORDER, OPT_SEED, OPT_DEDUP, OPT_MAX_CAND,
    OPT_TOKENIZER, OPT_MAX_LEN, OPT_GIANT, OPT_POOL, OPT_CORRECTOR, OPT_SAMPLES, OPT_TOP_K,
    OPT_TOP_P, OPT_GIANT_N, OPT_CORR_T, OPT_CORR_BEAMS, OPT_STOP, OPT_GIANT_TOK, OPT_CORR_TOK,
    OPT_METRICS, OPT_ANSWER, OPT_GIANT_PROMPT, OPT_GIANT_CHAT, OPT_GIANT_CHAT_TEMPLATE
};

#define COMMON_OPTIONS                                                                      \
    {"prompt-field", required_argument, 0, OPT_PROMPT_FIELD},                              \
        {"candidates-field", required_argument, 0, OPT_CANDIDATES_FIELD},                  \
        {"reference-field", required_argument, 0, OPT_REFERENCE_FIELD},                    \
        {"candidate-prefix", required_argument, 0, OPT_PREFIX},                            \
        {"separator", required_argument, 0, OPT_SEPARATOR},                                \
        {"cue", required_argument, 0, OPT_CUE},                                            \
        {"target-prefix", required_argument, 0, OPT_TARGET_PREFIX},                        \
        {"order", required_argument, 0, OPT_ORDER}, {"seed", required_argument, 0, OPT_SEED}, \
        {"dedup", no_argument, 0, OPT_DEDUP},                                              \
        {"max-candidates", required_argument, 0, OPT_MAX_CAND},                            \
        {"input", required_argument, 0, 'i'}, {"out", required_argument, 0, 'o'},          \
        {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}

/* The options build and run share; 1 when c was one of them (with *bad set
 * on a bad value), 0 when not. The unescaped strings go to owned[]. */
typedef struct {
    LmcorFields fields;
    LmcorFormat format;
    int fields_given;
    const char *input, *output;
    int quiet;
    char *owned[4];
} Common;

static int common_option(Common *o, int c, const char *arg, int *bad) {
    const char **target = NULL;
    int slot = 0;
    switch (c) {
    case OPT_PROMPT_FIELD: o->fields.prompt_field = arg; return 1;
    case OPT_CANDIDATES_FIELD:
        if (o->fields_given == LMCOR_MAX_FIELDS) {
            *bad = err_set("--candidates-field: at most %d fields", LMCOR_MAX_FIELDS);
            return 1;
        }
        o->fields.candidate_fields[o->fields_given++] = arg;
        o->fields.n_candidate_fields = o->fields_given;
        return 1;
    case OPT_REFERENCE_FIELD: o->fields.reference_field = arg; return 1;
    case OPT_PREFIX: target = &o->format.candidate_prefix, slot = 0; break;
    case OPT_SEPARATOR: target = &o->format.separator, slot = 1; break;
    case OPT_CUE: target = &o->format.cue, slot = 2; break;
    case OPT_TARGET_PREFIX: target = &o->format.target_prefix, slot = 3; break;
    case OPT_ORDER:
        if (!strcmp(arg, "generated")) o->format.shuffle = 0;
        else if (!strcmp(arg, "shuffle")) o->format.shuffle = 1;
        else
            *bad = err_set("--order takes generated (the pool's order) or shuffle, not '%s'",
                           arg);
        return 1;
    case OPT_SEED: {
        char *end;
        unsigned long long v = strtoull(arg, &end, 10);
        if (end == arg || *end || arg[0] == '-')
            *bad = err_set("--seed wants a whole number >= 0, not '%s'", arg);
        o->format.seed = v;
        return 1;
    }
    case OPT_DEDUP: o->format.dedup = 1; return 1;
    case OPT_MAX_CAND:
        *bad = cli_int("--max-candidates", arg, 0, INT_MAX, &o->format.max_candidates);
        return 1;
    case 'i': o->input = arg; return 1;
    case 'o': o->output = arg; return 1;
    case 'q': o->quiet = 1; return 1;
    default: return 0;
    }
    static const char *const names[] = {"--candidate-prefix", "--separator", "--cue",
                                        "--target-prefix"};
    free(o->owned[slot]);
    o->owned[slot] = unescape(names[slot], arg);
    if (!o->owned[slot]) *bad = -1;
    else *target = o->owned[slot];
    return 1;
}

static void common_init(Common *o) {
    memset(o, 0, sizeof *o);
    lmcor_fields_defaults(&o->fields);
    lmcor_format_defaults(&o->format);
}

static void common_free(Common *o) {
    for (int i = 0; i < 4; i++) free(o->owned[i]);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* ---------------------------------------------------------------- build */

static int correct_build(int argc, char **argv) {
    static const struct option opts[] = {COMMON_OPTIONS,
                                         {"tokenizer", required_argument, 0, OPT_TOKENIZER},
                                         {"max-len", required_argument, 0, OPT_MAX_LEN},
                                         {0, 0, 0, 0}};
    Common o;
    common_init(&o);
    const char *tokenizer = NULL;
    int max_len = 0, c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:o:qh", opts, NULL)) != -1) {
        if (common_option(&o, c, optarg, &bad)) {
        } else if (c == OPT_TOKENIZER) {
            tokenizer = optarg;
        } else if (c == OPT_MAX_LEN) {
            bad = cli_int("--max-len", optarg, 0, INT_MAX, &max_len);
        } else if (c == 'h') {
            common_free(&o);
            usage_correct(stdout);
            return 0;
        } else {
            common_free(&o);
            usage_correct(stderr);
            return 2;
        }
        if (bad) {
            common_free(&o);
            return cli_usage_fail("correct build");
        }
    }
    int rc = 2;
    int h5 = o.output && (ends_with(o.output, ".h5") || ends_with(o.output, ".hdf5"));
    if (optind < argc)
        fprintf(stderr, "retort correct build: unexpected argument '%s'\n", argv[optind]);
    else if (!o.input || !o.output)
        fprintf(stderr, "retort correct build: --input and --out are required\n");
    else if (h5 && !tokenizer)
        fprintf(stderr, "retort correct build: --out %s is an sft dataset: give the corrector's "
                        "tokenizer with --tokenizer (bytes, or a tokenizer.json or model "
                        "directory), or write .jsonl\n", o.output);
    else if (!h5 && (tokenizer || max_len))
        fprintf(stderr, "retort correct build: --tokenizer and --max-len tokenize an .h5 "
                        "output; --out %s is JSONL text\n", o.output);
    else
        rc = 0;
    if (rc != 0) {
        common_free(&o);
        return rc;
    }
    LmcorBuildJob job = {o.input, o.output, o.fields, o.format};
    char jsonl[4096];
    if (h5 && snprintf(jsonl, sizeof jsonl, "%s.tmp.jsonl", o.output) >= (int)sizeof jsonl) {
        err_set("output path too long: %s", o.output);
        common_free(&o);
        return cli_fail("correct build");
    }
    if (h5) job.output = jsonl;
    LmcorBuildStats st;
    rc = lmcor_build(&job, &st);
    if (rc == 0 && !o.quiet)
        printf("correct build: %lld examples, %lld candidates (%lld in the inputs%s) -> %s\n",
               (long long)st.examples, (long long)st.candidates, (long long)st.kept,
               o.format.dedup ? "" : "; duplicates kept", h5 ? o.output : job.output);
    if (rc == 0 && o.format.dedup && !o.quiet)
        printf("  %lld exact duplicates dropped\n", (long long)st.duplicates);
    if (rc == 0 && h5) {
        BuildOptions b = {0};
        b.input = jsonl;
        b.output = o.output;
        b.schema = SCHEMA_SFT;
        b.tokenizer = tokenizer;
        b.max_len = max_len;
        b.quiet = o.quiet;
        b.chat_template = "plain"; /* prompt + completion lines: no conversation to render */
        rc = data_build(&b);
        remove(jsonl);
    }
    common_free(&o);
    return rc == 0 ? 0 : cli_fail("correct build");
}

/* ------------------------------------------------------------------ run */

static GPT *load(const char *dir, const char *spec, const Backend *be, Tokenizer **tok) {
    GPT *m = model_load_hf(dir, be);
    if (!m) return NULL;
    *tok = model_tokenizer_load(dir, spec, gpt_config(m)->vocab_size);
    if (!*tok) {
        gpt_free(m);
        return NULL;
    }
    gpt_set_train_mode(m, 0);
    return m;
}

static void print_scores(const char *name, const LmcorScores *s) {
    printf("  %-16s %7.2f %7.2f %7.1f%% %8.4f %9.4f", name, s->bleu, s->chrf,
           100 * s->exact_match, s->rouge_l, s->token_f1);
    if (!isnan(s->accuracy))
        printf(" %8.1f%% (%lld without an answer)", 100 * s->accuracy, (long long)s->no_answer);
    printf("\n");
}

static int correct_run(int argc, char **argv) {
    static const struct option opts[] = {
        COMMON_OPTIONS,
        {"giant", required_argument, 0, OPT_GIANT},
        {"pool", required_argument, 0, OPT_POOL},
        {"corrector", required_argument, 0, OPT_CORRECTOR},
        {"candidates", required_argument, 0, OPT_SAMPLES},
        {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, OPT_TOP_K},
        {"top-p", required_argument, 0, OPT_TOP_P},
        {"giant-max-new-tokens", required_argument, 0, OPT_GIANT_N},
        {"max-new-tokens", required_argument, 0, 'n'},
        {"corrector-temperature", required_argument, 0, OPT_CORR_T},
        {"corrector-beams", required_argument, 0, OPT_CORR_BEAMS},
        {"stop", required_argument, 0, OPT_STOP},
        {"giant-tokenizer", required_argument, 0, OPT_GIANT_TOK},
        {"corrector-tokenizer", required_argument, 0, OPT_CORR_TOK},
        {"metrics", required_argument, 0, OPT_METRICS},
        {"answer", required_argument, 0, OPT_ANSWER},
        {"giant-prompt-field", required_argument, 0, OPT_GIANT_PROMPT},
        {"giant-chat", no_argument, 0, OPT_GIANT_CHAT},
        {"giant-chat-template", required_argument, 0, OPT_GIANT_CHAT_TEMPLATE},
        CLI_CONTEXT_OPTIONS,
        CLI_DEVICE_OPTIONS,
        {0, 0, 0, 0}};
    Common o;
    common_init(&o);
    o.fields.reference_field = NULL; /* run scores only when asked */
    CliDevice dev = {0};
    CliChat giant_chat = {0};
    LmcorRunJob job = {0};
    GenerateJob *g = &job.giant, *k = &job.corrector;
    g->sample = (SampleOptions){64, 0.6, 0, 1.0, -1, NULL, NULL};
    g->samples = 1;
    g->candidates = 4;
    g->length_penalty = 1.0;
    g->seed = 1337;
    k->sample = (SampleOptions){64, 0.0, 0, 1.0, -1, NULL, NULL};
    k->samples = 1;
    k->length_penalty = 1.0;
    k->seed = 1337;
    const char *giant_dir = NULL, *pool = NULL, *corr_dir = NULL, *giant_spec = NULL;
    const char *corr_spec = NULL, *metrics = NULL, *answer = NULL;
    int giant_n = 0, corr_n = 0, giant_opts = 0, c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:o:t:n:qh", opts, NULL)) != -1) {
        giant_opts |= c == OPT_SAMPLES || c == 't' || c == OPT_TOP_K || c == OPT_TOP_P ||
                      c == OPT_GIANT_N || c == OPT_GIANT_TOK || c == OPT_GIANT_PROMPT ||
                      c == OPT_GIANT_CHAT || c == OPT_GIANT_CHAT_TEMPLATE;
        if (common_option(&o, c, optarg, &bad)) {
            if (c == OPT_SEED) g->seed = k->seed = o.format.seed;
        } else {
            switch (c) {
            case OPT_GIANT: giant_dir = optarg; break;
            case OPT_POOL: pool = optarg; break;
            case OPT_CORRECTOR: corr_dir = optarg; break;
            case OPT_SAMPLES:
                bad = cli_int("--candidates", optarg, 0, INT_MAX / 2, &g->candidates);
                break;
            case 't':
                bad = cli_double("--temperature", optarg, 0, DBL_MAX, &g->sample.temperature);
                break;
            case OPT_TOP_K: bad = cli_int("--top-k", optarg, 0, INT_MAX, &g->sample.top_k); break;
            case OPT_TOP_P:
                bad = cli_double("--top-p", optarg, -DBL_MAX, DBL_MAX, &g->sample.top_p);
                break;
            case OPT_GIANT_N:
                bad = cli_int("--giant-max-new-tokens", optarg, 1, INT_MAX / 2,
                              &g->sample.max_new_tokens);
                giant_n = 1;
                break;
            case 'n':
                bad = cli_int("--max-new-tokens", optarg, 1, INT_MAX / 2,
                              &k->sample.max_new_tokens);
                corr_n = 1;
                break;
            case OPT_CORR_T:
                bad = cli_double("--corrector-temperature", optarg, 0, DBL_MAX,
                                 &k->sample.temperature);
                break;
            case OPT_CORR_BEAMS:
                bad = cli_int("--corrector-beams", optarg, 0, INT_MAX, &k->beams);
                break;
            case OPT_STOP:
                if (g->n_stop == GENERATE_MAX_STOPS || !optarg[0]) {
                    fprintf(stderr, "retort correct run: at most %d non-empty --stop strings\n",
                            GENERATE_MAX_STOPS);
                    common_free(&o);
                    return 2;
                }
                g->stop[g->n_stop++] = optarg;
                k->stop[k->n_stop++] = optarg;
                break;
            case OPT_GIANT_TOK: giant_spec = optarg; break;
            case OPT_CORR_TOK: corr_spec = optarg; break;
            case OPT_METRICS: metrics = optarg; break;
            case OPT_ANSWER: answer = optarg; break;
            case OPT_GIANT_PROMPT: g->prompt_field = optarg; break;
            case OPT_GIANT_CHAT: giant_chat.on = 1; break;
            case OPT_GIANT_CHAT_TEMPLATE: giant_chat.path = optarg; break;
            case CLI_OPT_TRUNCATE:
                bad = truncate_prompt_from_name(optarg, &g->truncate_prompt);
                k->truncate_prompt = g->truncate_prompt;
                break;
            case CLI_OPT_CLAMP: g->clamp_new_tokens = k->clamp_new_tokens = 1; break;
            case CLI_OPT_DEVICE: dev.device = optarg; break;
            case CLI_OPT_THREADS: dev.threads = optarg; break;
            case 'h':
                common_free(&o);
                usage_correct(stdout);
                return 0;
            default:
                common_free(&o);
                usage_correct(stderr);
                return 2;
            }
        }
        if (bad) {
            common_free(&o);
            return cli_usage_fail("correct run");
        }
    }
    const char *usage = NULL;
    if (optind < argc) usage = "unexpected argument";
    else if (!corr_dir || !o.output) usage = "--corrector and --out are required";
    else if (!giant_dir == !pool)
        usage = "give the candidates' source: --giant DIR (with --input FILE) or --pool FILE";
    else if (giant_dir && !o.input) usage = "--giant needs --input FILE, the JSONL of sources";
    else if (pool && o.input)
        usage = "--pool FILE is the input (sources and candidates); leave out --input";
    else if (pool && giant_opts)
        usage = "--candidates, --temperature, --top-k, --top-p and the --giant-* options "
                "shape the giant's pool; with --pool the candidates are given";
    else if (giant_dir && o.fields_given > 0)
        usage = "--candidates-field reads candidates from --pool; with --giant they are "
                "generated";
    else if (metrics && !o.fields.reference_field)
        usage = "--metrics writes scores against a gold target: name it with --reference-field";
    else if (answer && !o.fields.reference_field)
        usage = "--answer SPEC compares answers with the gold target's: name its field with "
                "--reference-field";
    if (usage) {
        fprintf(stderr, "retort correct run: %s%s%s%s\n", usage, optind < argc ? " '" : "",
                optind < argc ? argv[optind] : "", optind < argc ? "'" : "");
        common_free(&o);
        return 2;
    }
    AnswerSpec *spec = NULL;
    if (sample_options_check(&g->sample) != 0 || sample_options_check(&k->sample) != 0 ||
        beam_options_check(k->beams, k->length_penalty) != 0 ||
        (answer && !(spec = answer_spec_parse(answer)))) {
        common_free(&o);
        return cli_usage_fail("correct run");
    }
    job.answer = spec;
    job.input = pool ? pool : o.input;
    job.output = o.output;
    job.fields = o.fields;
    job.format = o.format;
    job.quiet = o.quiet;
    g->quiet = k->quiet = 1;
    const Backend *be = cli_backend(&dev);
    if (!be) {
        answer_spec_free(spec);
        common_free(&o);
        return cli_fail("correct run");
    }
    Tokenizer *giant_tok = NULL, *corr_tok = NULL;
    GPT *giant = NULL, *corr = NULL;
    int rc = -1;
    if ((!giant_dir || (giant = load(giant_dir, giant_spec, be, &giant_tok))) &&
        (corr = load(corr_dir, corr_spec, be, &corr_tok))) {
        if (giant && !giant_n)
            g->sample.max_new_tokens =
                cli_default_new_tokens(64, gpt_context_len(gpt_config(giant)));
        if (!corr_n)
            k->sample.max_new_tokens =
                cli_default_new_tokens(64, gpt_context_len(gpt_config(corr)));
        if (giant) g->sample.eos_id = giant_tok->eos_id;
        k->sample.eos_id = corr_tok->eos_id;
        ChatPrompt cp = {0};
        LmcorRunResult r;
        rc = giant ? cli_chat_open(&giant_chat, giant_dir, giant_tok, &cp) : 0;
        if (rc == 0 && cp.tmpl) {
            g->chat = &cp;
            g->sample.eos_id = cp.end_of_turn;
        }
        if (rc == 0) rc = lmcor_run(giant, giant_tok, corr, corr_tok, &job, &r);
        chat_prompt_close(&cp);
        if (rc == 0 && !o.quiet) {
            printf("correct: %lld lines, %lld candidates from %s, corrected by %s (%.1f s) -> %s\n",
                   (long long)r.lines, (long long)r.candidates, giant ? giant_dir : pool,
                   corr_dir, r.seconds, o.output);
            if (r.has_reference) {
                printf("  against '%s':      BLEU    chrF   exact  ROUGE-L  token F1%s\n",
                       o.fields.reference_field, spec ? "  accuracy" : "");
                print_scores("giant (greedy)", &r.giant);
                print_scores("correction", &r.correction);
            }
        }
        if (rc == 0 && metrics) rc = lmcor_result_write_json(&r, metrics);
    }
    gpt_free(giant);
    gpt_free(corr);
    tokenizer_free(giant_tok);
    tokenizer_free(corr_tok);
    answer_spec_free(spec);
    common_free(&o);
    return rc == 0 ? 0 : cli_fail("correct run");
}

int cmd_correct(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "build")) return correct_build(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "run")) return correct_run(argc - 1, argv + 1);
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage_correct(stdout);
        return 0;
    }
    fprintf(stderr, "usage: retort correct build|run ... (see retort correct --help)\n");
    return 2;
}
