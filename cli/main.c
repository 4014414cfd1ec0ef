/* cli/main.c — the `retort` command line.
 *
 *   retort train -c CONFIG [--set section.key=value ...] [--resume] [--init DIR]
 *   retort data build --schema lm|sft --input FILE --out FILE.h5 [...]
 *   retort generate --model DIR --prompt TEXT [...]
 *
 * Every command has --help. Errors print what, where and how to fix, and exit 1.
 */
#include <cblas.h>
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/build.h"
#include "data/h5data.h"
#include "data/inspect.h"
#include "data/tokenizer.h"
#include "eval/agent.h"
#include "model/generate.h"
#include "eval/generate_io.h"
#include "eval/pairs.h"
#include "model/backend.h"
#include "cli/commands.h"
#include "train/config.h"
#include "train/dist.h"
#include "model/model_io.h"
#include "train/stages.h"
#include "train/trainer.h"
#include "util/util.h"

#define RETORT_VERSION "0.1.0"

static int fail(const char *cmd) {
    fprintf(stderr, "retort %s: error: %s\n", cmd, err_msg());
    return 1;
}

static void usage_main(FILE *f) {
    fprintf(f,
            "retort %s — train and distill GPT-style language models in C\n\n"
            "usage: retort <command> [options]\n\n"
            "commands:\n"
            "  train        train or fine-tune a model from a YAML config\n"
            "  stages       multi-stage training (GLPFT: global, then one model per role)\n"
            "  agent        tool-use agents (α-UMi): make data, run the planner/caller/summarizer loop\n"
            "  data build   turn text or JSONL into an HDF5 dataset (lm, sft, pref)\n"
            "  data inspect / validate   look into / check an HDF5 dataset\n"
            "  generate     sample text from a checkpoint (text, JSONL, or a kd dataset)\n"
            "  eval         BLEU, chrF, exact match, ROUGE-L, perplexity over a JSONL\n"
            "  export       merge a LoRA adapter into its base model\n"
            "  dpo precompute-ref   store a reference model's log-probs in a pref file\n"
            "  pairs        preference pairs from a model's scored samples (pref dataset)\n"
            "  tokenizer    train a byte-level BPE, or encode text with one\n"
            "  device       the CUDA driver, runtime and GPUs this build sees; fails if unusable\n"
            "  version      print the version\n\n"
            "Run `retort <command> --help` for the options of a command.\n",
            RETORT_VERSION);
}

/* ------------------------------------------------------------------ train */

static void usage_train(FILE *f) {
    fprintf(f,
            "usage: retort train -c CONFIG.yaml [options]\n\n"
            "options:\n"
            "  -c, --config FILE     YAML run config (see configs/)\n"
            "  -s, --set KEY=VALUE   override one config key, e.g. --set optim.lr=3e-4 "
            "(repeatable)\n"
            "      --resume          continue from the newest complete checkpoint in "
            "train.out_dir\n"
            "      --init DIR        start from a Hugging Face GPT-2 checkpoint directory\n"
            "                        (same as --set model.init=DIR)\n"
            "      --device NAME     cpu or cuda (same as --set train.device=NAME)\n"
            "      --print-config    print the resolved config and exit\n"
            "  -h, --help            this help\n\n"
            "config keys (section.key, type, default):\n");
    config_print_keys(f);
}

static int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 's'},
        {"resume", no_argument, 0, 'r'},       {"init", required_argument, 0, 'i'},
        {"device", required_argument, 0, 'd'}, {"print-config", no_argument, 0, 'p'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    const char *config_path = NULL;
    char **sets = xcalloc((size_t)argc, sizeof(char *)); /* owned copies, in order */
    int n_sets = 0, print_only = 0, rc = 1;
    TrainOptions topt = {0, 0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 's': sets[n_sets++] = xstrdup(optarg); break;
        case 'r': topt.resume = 1; break;
        case 'i': case 'd': {
            /* kept in order with --set so the last one wins */
            char *kv = xmalloc(strlen(optarg) + 32);
            sprintf(kv, "%s=%s", c == 'i' ? "model.init" : "train.device", optarg);
            sets[n_sets++] = kv;
            break;
        }
        case 'p': print_only = 1; break;
        case 'h': usage_train(stdout); rc = 0; goto out;
        default: usage_train(stderr); rc = 2; goto out;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "retort train: unexpected argument '%s'\n", argv[optind]);
        rc = 2;
        goto out;
    }
    Config cfg;
    config_defaults(&cfg);
    if (config_path && config_load_yaml(&cfg, config_path) != 0) goto failed;
    for (int i = 0; i < n_sets; i++)
        if (config_set(&cfg, sets[i]) != 0) goto failed;
    if (config_validate(&cfg) != 0) goto failed;
    if (!print_only && dist_init(!strcmp(cfg.train.device, "cuda")) != 0) goto failed;
    if (dist_rank() == 0) {
        char *yaml = config_to_yaml(&cfg);
        printf("# resolved config\n%s\n", yaml);
        free(yaml);
    }
    rc = 0;
    if (print_only) goto out;
    train_install_signal_handlers();
    if (dist_size() > 1 && dist_rank() > 0) topt.quiet = 1;
    if (train_run(&cfg, &topt) == 0) {
        dist_finalize();
        goto out;
    }
    if (dist_size() > 1) { /* the other ranks would wait for this one forever */
        fprintf(stderr, "retort train (rank %d): error: %s\n", dist_rank(), err_msg());
        dist_abort(1);
    }
failed:
    rc = fail("train");
out:
    for (int i = 0; i < n_sets; i++) free(sets[i]);
    free(sets);
    return rc;
}

/* ------------------------------------------------------------------- data */

static void usage_data_build(FILE *f) {
    fprintf(f,
            "usage: retort data build --schema lm|sft|pref --input FILE --out FILE.h5 [options]\n"
            "       retort data inspect FILE.h5 [--examples N] [--tokenizer SPEC]\n"
            "       retort data validate FILE.h5\n\n"
            "Input is JSONL (.jsonl/.json: one object per line) or plain text (lm only; the whole\n"
            "file is one document). Every document ends with EOS. The output is written to\n"
            "FILE.h5.tmp and renamed when complete.\n\n"
            "  lm    {\"text\": ...}\n"
            "  sft   {\"prompt\": ..., \"completion\": ...} (loss on the completion), or chat\n"
            "        {\"messages\": [{\"role\": \"user\"|\"assistant\"|\"system\", \"content\": ...}]}\n"
            "        (one example per assistant turn, loss on that turn only)\n"
            "  pref  {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...}\n\n"
            "options:\n"
            "      --schema NAME          lm, sft or pref (default lm)\n"
            "  -i, --input FILE           input file, or - for standard input\n"
            "  -o, --out FILE             output HDF5 file\n"
            "      --tokenizer SPEC       tokenizer (default: bytes — 256 byte ids + EOS)\n"
            "      --text-field NAME      JSONL field for lm (default: text)\n"
            "      --prompt-field NAME    JSONL field for the sft prompt (default: prompt)\n"
            "      --completion-field N   JSONL field for the sft completion (default: "
            "completion)\n"
            "      --messages-field NAME  JSONL field of a chat conversation (default: messages)\n"
            "      --chat-template NAME   how chat turns are rendered (default: plain)\n"
            "      --role-field NAME      string field tagging each sft example with a role "
            "(GLPFT)\n"
            "      --task-field NAME      string field tagging each sft example with a task "
            "(multi-task)\n"
            "      --train-roles LIST     sft chat: one example per turn of these roles (e.g.\n"
            "                             planner,caller,summarizer; default assistant); the "
            "role\n"
            "                             column holds the turn's role, ids in LIST order\n"
            "      --max-len N            sft: truncate to N tokens, keeping the end of the "
            "prompt and\n"
            "                             the start of the completion (default 0 = off)\n"
            "      --chosen-field NAME    pref: field of the preferred completion (default: "
            "chosen)\n"
            "      --rejected-field NAME  pref: field of the other completion (default: "
            "rejected)\n"
            "      --skip-bad             skip malformed lines (and count them) instead of "
            "failing\n"
            "  -q, --quiet                no report\n"
            "  -h, --help                 this help\n");
}

static int cmd_data_inspect(int argc, char **argv, int validate) {
    static const struct option opts[] = {{"examples", required_argument, 0, 'n'},
                                         {"tokenizer", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int examples = 3, c;
    const char *tok = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': examples = atoi(optarg); break;
        case 't': tok = optarg; break;
        case 'h': usage_data_build(stdout); return 0;
        default: usage_data_build(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: retort data %s FILE.h5\n", validate ? "validate" : "inspect");
        return 2;
    }
    int rc = validate ? data_validate(argv[optind]) : data_inspect(argv[optind], examples, tok);
    return rc == 0 ? 0 : fail(validate ? "data validate" : "data inspect");
}

static int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "inspect")) return cmd_data_inspect(argc - 1, argv + 1, 0);
    if (argc >= 2 && !strcmp(argv[1], "validate")) return cmd_data_inspect(argc - 1, argv + 1, 1);
    if (argc < 2 || strcmp(argv[1], "build") != 0) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            usage_data_build(stdout);
            return 0;
        }
        fprintf(stderr, "usage: retort data build ... (see retort data build --help)\n");
        return 2;
    }
    argc--;
    argv++;
    static const struct option opts[] = {
        {"schema", required_argument, 0, 'S'},  {"input", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},     {"tokenizer", required_argument, 0, 't'},
        {"text-field", required_argument, 0, 'T'}, {"prompt-field", required_argument, 0, 'P'},
        {"completion-field", required_argument, 0, 'C'}, {"skip-bad", no_argument, 0, 'k'},
        {"quiet", no_argument, 0, 'q'},         {"help", no_argument, 0, 'h'},
        {"messages-field", required_argument, 0, 'M'}, {"chat-template", required_argument, 0, 'H'},
        {"role-field", required_argument, 0, 'R'}, {"max-len", required_argument, 0, 'L'},
        {"task-field", required_argument, 0, 'K'}, {"train-roles", required_argument, 0, 'G'},
        {"chosen-field", required_argument, 0, 'c'}, {"rejected-field", required_argument, 0, 'r'},
        {0, 0, 0, 0}};
    BuildOptions o = {0};
    o.schema = SCHEMA_LM;
    o.tokenizer = "bytes";
    o.text_field = "text";
    o.prompt_field = "prompt";
    o.completion_field = "completion";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            if (schema_from_name(optarg, &o.schema) != 0) return fail("data build");
            break;
        case 'i': o.input = optarg; break;
        case 'o': o.output = optarg; break;
        case 't': o.tokenizer = optarg; break;
        case 'T': o.text_field = optarg; break;
        case 'P': o.prompt_field = optarg; break;
        case 'C': o.completion_field = optarg; break;
        case 'k': o.skip_bad = 1; break;
        case 'M': o.messages_field = optarg; break;
        case 'H': o.chat_template = optarg; break;
        case 'R': o.role_field = optarg; break;
        case 'K': o.task_field = optarg; break;
        case 'G': o.train_roles = optarg; break;
        case 'L': o.max_len = atoll(optarg); break;
        case 'c': o.chosen_field = optarg; break;
        case 'r': o.rejected_field = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'h': usage_data_build(stdout); return 0;
        default: usage_data_build(stderr); return 2;
        }
    }
    if (!o.input || !o.output) {
        fprintf(stderr, "retort data build: --input and --out are required\n");
        return 2;
    }
    if (data_build(&o) != 0) return fail("data build");
    return 0;
}

/* --------------------------------------------------------------- generate */

static void usage_generate(FILE *f) {
    fprintf(f,
            "usage: retort generate --model DIR --prompt TEXT [options]\n"
            "       retort generate --model DIR --input prompts.jsonl --out out.jsonl [options]\n\n"
            "With --input, each JSONL line's prompt field is completed and the line is written\n"
            "to --out with \"completions\" added (and \"scores\", \"logps\" for beam search).\n\n"
            "options:\n"
            "  -m, --model DIR           checkpoint directory (model.safetensors + config.json)\n"
            "  -p, --prompt TEXT         text to continue\n"
            "  -n, --max-new-tokens N    tokens to generate (default 200)\n"
            "  -t, --temperature X       0 = greedy (default 0.8)\n"
            "  -k, --top-k K             sample from the K most likely tokens (default 40; 0 = "
            "all)\n"
            "      --top-p P             sample from the smallest set of tokens with probability "
            ">= P (default 1 = off)\n"
            "      --samples N           number of samples (default 1)\n"
            "      --seed N              random seed (default 1337)\n"
            "      --tokenizer SPEC      tokenizer (default: bytes)\n"
            "      --threads N           CPU threads (default: all)\n"
            "      --stats               print tokens generated and decode tokens/s to stderr\n"
            "      --ignore-eos          keep generating past EOS (benchmarks)\n"
            "      --beams K             beam search with K beams; prints the --samples best\n"
            "                            hypotheses with their scores (sum logp / len^penalty)\n"
            "      --length-penalty X    beam search length penalty (default 1.0)\n"
            "  -i, --input FILE          JSONL of prompts (instead of --prompt)\n"
            "  -o, --out FILE            JSONL output for --input\n"
            "      --prompt-field NAME   prompt field of --input lines (default: prompt)\n"
            "      --stop STR            end a completion where STR appears (repeatable; "
            "--input)\n\n"
            "kd dataset output (--out X.h5; examples = prompt + completion + EOS):\n"
            "      --select MODE         best: the first sample / best beam (sequence-level "
            "KD);\n"
            "                            all: every completion (multi-candidate); bleu: the "
            "one with\n"
            "                            the highest sentence BLEU against --reference-field "
            "(seq-inter)\n"
            "      --reference-field F   the gold target's field\n"
            "      --add-gold            also keep the gold target as an example\n"
            "      --store-topk K        store the model's top-K next-token log-probs per "
            "token\n"
            "                            (offline word-level KD)\n"
            "      --drop-empty          drop empty completions\n"
            "      --drop-unfinished     drop completions without EOS or stop string\n"
            "      --drop-copies         drop completions identical to the prompt\n"
            "  -h, --help                this help\n");
}

static int cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"prompt", required_argument, 0, 'p'},
        {"max-new-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},       {"samples", required_argument, 0, 'S'},
        {"top-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 's'},        {"tokenizer", required_argument, 0, 'T'},
        {"threads", required_argument, 0, 'j'},     {"help", no_argument, 0, 'h'},
        {"stats", no_argument, 0, 'x'},             {"ignore-eos", no_argument, 0, 'E'},
        {"beams", required_argument, 0, 'B'},       {"length-penalty", required_argument, 0, 'l'},
        {"input", required_argument, 0, 'i'},       {"out", required_argument, 0, 'o'},
        {"prompt-field", required_argument, 0, 'F'}, {"stop", required_argument, 0, 'X'},
        {"select", required_argument, 0, 'L'},      {"reference-field", required_argument, 0, 'R'},
        {"add-gold", no_argument, 0, 'G'},          {"store-topk", required_argument, 0, 'K'},
        {"drop-empty", no_argument, 0, 'e'},        {"drop-unfinished", no_argument, 0, 'u'},
        {"drop-copies", no_argument, 0, 'c'},       {0, 0, 0, 0}};
    GenerateJob job = {0};
    const char *model_dir = NULL, *prompt = "", *tok_spec = "bytes";
    int stats = 0, ignore_eos = 0, beams = 0;
    const char *input = NULL, *output = NULL, *prompt_field = "prompt";
    double length_penalty = 1.0;
    SampleOptions so = {200, 0.8, 40, 1.0, -1, NULL, NULL};
    int samples = 1;
    long seed = 1337;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:n:t:k:i:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n': so.max_new_tokens = atoi(optarg); break;
        case 't': so.temperature = atof(optarg); break;
        case 'k': so.top_k = atoi(optarg); break;
        case 'P': so.top_p = atof(optarg); break;
        case 'S': samples = atoi(optarg); break;
        case 's': seed = atol(optarg); break;
        case 'T': tok_spec = optarg; break;
        case 'j':
            omp_set_num_threads(atoi(optarg) > 0 ? atoi(optarg) : 1);
            openblas_set_num_threads(atoi(optarg) > 0 ? atoi(optarg) : 1);
            break;
        case 'x': stats = 1; break;
        case 'E': ignore_eos = 1; break;
        case 'B': beams = atoi(optarg); break;
        case 'i': input = optarg; break;
        case 'o': output = optarg; break;
        case 'F': prompt_field = optarg; break;
        case 'l': length_penalty = atof(optarg); break;
        case 'X':
            if (job.n_stop == GENERATE_MAX_STOPS) {
                fprintf(stderr, "retort generate: at most %d --stop strings\n",
                        GENERATE_MAX_STOPS);
                return 2;
            }
            if (!optarg[0]) {
                fprintf(stderr, "retort generate: --stop needs a non-empty string\n");
                return 2;
            }
            job.stop[job.n_stop++] = optarg;
            break;
        case 'L':
            if (target_select_from_name(optarg, &job.select) != 0) return fail("generate");
            break;
        case 'R': job.reference_field = optarg; break;
        case 'G': job.add_gold = 1; break;
        case 'K': job.store_topk = atoi(optarg); break;
        case 'e': job.drop_empty = 1; break;
        case 'u': job.drop_unfinished = 1; break;
        case 'c': job.drop_copies = 1; break;
        case 'h': usage_generate(stdout); return 0;
        default: usage_generate(stderr); return 2;
        }
    }
    if (!model_dir) {
        fprintf(stderr, "retort generate: --model DIR is required\n");
        return 2;
    }
    if (so.max_new_tokens < 1 || samples < 1 || so.top_k < 0 || so.temperature < 0 ||
        !(so.top_p > 0 && so.top_p <= 1)) {
        fprintf(stderr, "retort generate: --max-new-tokens and --samples must be >= 1, "
                        "--top-k and --temperature >= 0, --top-p in (0, 1]\n");
        return 2;
    }
    Tokenizer *tok = tokenizer_load(tok_spec);
    if (!tok) return fail("generate");
    GPT *m = model_load_hf(model_dir, backend_cpu());
    if (!m) return fail("generate");
    if (gpt_config(m)->vocab_size < tok->vocab_size) {
        err_set("%s: model vocab_size %d is smaller than the tokenizer's %d", model_dir,
                gpt_config(m)->vocab_size, tok->vocab_size);
        return fail("generate");
    }
    so.eos_id = ignore_eos ? -1 : tok->eos_id;
    if (input || output) {
        if (!input || !output) {
            fprintf(stderr, "retort generate: --input and --out go together\n");
            return 2;
        }
        job.input = input;
        job.output = output;
        job.prompt_field = prompt_field;
        job.sample = so;
        job.samples = samples;
        job.beams = beams;
        job.length_penalty = length_penalty;
        job.seed = (uint64_t)seed;
        int rc = generate_jsonl(m, tok, &job, NULL);
        gpt_free(m);
        tokenizer_free(tok);
        return rc == 0 ? 0 : fail("generate");
    }
    uint32_t *ids = NULL;
    int64_t cap = 0;
    int64_t n = tok->encode(tok, prompt, strlen(prompt), &ids, &cap, 0);
    if (n == 0) { /* an empty prompt starts from EOS, the document separator */
        ids = xrealloc(ids, sizeof(uint32_t));
        ids[0] = (uint32_t)tok->eos_id;
        n = 1;
    }
    int ctx = gpt_config(m)->n_positions;
    if (n > ctx) { /* keep the end of a prompt longer than the context */
        memmove(ids, ids + (n - ctx), (size_t)ctx * sizeof(uint32_t));
        n = ctx;
    }
    int *tokens = xmalloc((size_t)(n + so.max_new_tokens) * sizeof(int));
    if (beams > 0) {
        if (samples > beams) samples = beams;
        Hypothesis *h = xcalloc((size_t)samples, sizeof(Hypothesis));
        for (int64_t i = 0; i < n; i++) tokens[i] = (int)ids[i];
        int got = generate_beam(m, tokens, (int)n, beams, so.max_new_tokens,
                                length_penalty, so.eos_id, samples, h);
        for (int k = 0; k < got; k++) {
            uint32_t *out = xmalloc((size_t)(h[k].len > 0 ? h[k].len : 1) * sizeof(uint32_t));
            for (int i = 0; i < h[k].len; i++) out[i] = (uint32_t)h[k].tokens[i];
            char *text = tokenizer_decode(tok, out, h[k].len);
            printf("--- beam %d score %.4f logp %.4f\n%s%s\n", k + 1, h[k].score, h[k].logp,
                   prompt, text);
            free(text);
            free(out);
        }
        hypotheses_free(h, got);
        free(h);
        samples = 0; /* done */
    }
    Rng rng;
    rng_seed(&rng, (uint64_t)seed);
    for (int s = 0; s < samples; s++) {
        for (int64_t i = 0; i < n; i++) tokens[i] = (int)ids[i];
        double t0 = now_seconds();
        int len = generate_sample(m, tokens, (int)n, &so, &rng);
        double dt = now_seconds() - t0;
        if (stats)
            fprintf(stderr, "generate: prompt %lld tokens, %d new tokens in %.3f s: %.1f tok/s\n",
                    (long long)n, len - (int)n, dt, (len - n) / dt);
        uint32_t *out = xmalloc((size_t)len * sizeof(uint32_t));
        int len_out = 0;
        for (int i = (int)n; i < len; i++)
            if (tokens[i] != tok->eos_id) out[len_out++] = (uint32_t)tokens[i];
        char *text = tokenizer_decode(tok, out, len_out);
        if (samples > 1) printf("--- sample %d\n", s + 1);
        printf("%s%s\n", prompt, text);
        free(text);
        free(out);
    }
    free(tokens);
    free(ids);
    gpt_free(m);
    tokenizer_free(tok);
    return 0;
}

/* ----------------------------------------------------------------- device */

/* What a researcher checks first on a new machine, and what `make test-gpu`
 * runs before anything else so it fails with the reason, not zero tests. */
static int cmd_device(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: retort device\n\n"
               "Prints the CUDA runtime and driver versions, every visible GPU (name, compute\n"
               "capability, memory) and runs a test kernel on the one a single-process run\n"
               "uses (device 0). Exits 1 with the reason when CUDA is unusable: no device, a\n"
               "driver too old for the toolkit, or no kernel image for the GPU.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "retort device: unexpected argument '%s'\n", argv[1]);
        return 2;
    }
#ifdef RETORT_CUDA
    int rc = backend_cuda_probe(stdout);
    fflush(stdout); /* what was found, before why it is not enough */
    return rc == 0 ? 0 : fail("device");
#else
    err_set("this retort was built without CUDA (CUDA=0, or nvcc was not found when it was "
            "built); rebuild on a machine with the CUDA toolkit");
    return fail("device");
#endif
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage_main(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("retort %s\n", RETORT_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "data")) return cmd_data(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenizer")) return cmd_tokenizer(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "export")) return cmd_export(argc - 1, argv + 1);
    if (!strcmp(cmd, "dpo")) return cmd_dpo(argc - 1, argv + 1);
    if (!strcmp(cmd, "pairs")) return cmd_pairs(argc - 1, argv + 1);
    if (!strcmp(cmd, "stages")) return cmd_stages(argc - 1, argv + 1);
    if (!strcmp(cmd, "agent")) return cmd_agent(argc - 1, argv + 1);
    if (!strcmp(cmd, "device")) return cmd_device(argc - 1, argv + 1);
    fprintf(stderr, "retort: unknown command '%s'\n\n", cmd);
    usage_main(stderr);
    return 2;
}
