/* cli/cmd_generate.c — `retort generate`: sample or beam-search from a
 * checkpoint, for one --prompt (printed) or every line of a JSONL (written
 * back with its completions, or into a kd dataset; eval/generate_io.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/tokenizer.h"
#include "eval/generate_io.h"
#include "model/generate.h"
#include "model/model_io.h"
#include "util/util.h"

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
            CLI_DEVICE_HELP
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

int cmd_generate(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},       {"prompt", required_argument, 0, 'p'},
        {"max-new-tokens", required_argument, 0, 'n'}, {"temperature", required_argument, 0, 't'},
        {"top-k", required_argument, 0, 'k'},       {"samples", required_argument, 0, 'S'},
        {"top-p", required_argument, 0, 'P'},
        {"seed", required_argument, 0, 's'},        {"tokenizer", required_argument, 0, 'T'},
        CLI_DEVICE_OPTIONS,                         {"help", no_argument, 0, 'h'},
        {"stats", no_argument, 0, 'x'},             {"ignore-eos", no_argument, 0, 'E'},
        {"beams", required_argument, 0, 'B'},       {"length-penalty", required_argument, 0, 'l'},
        {"input", required_argument, 0, 'i'},       {"out", required_argument, 0, 'o'},
        {"prompt-field", required_argument, 0, 'F'}, {"stop", required_argument, 0, 'X'},
        {"select", required_argument, 0, 'L'},      {"reference-field", required_argument, 0, 'R'},
        {"add-gold", no_argument, 0, 'G'},          {"store-topk", required_argument, 0, 'K'},
        {"drop-empty", no_argument, 0, 'e'},        {"drop-unfinished", no_argument, 0, 'u'},
        {"drop-copies", no_argument, 0, 'c'},       {0, 0, 0, 0}};
    GenerateJob job = {0};
    CliDevice dev = {0};
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
        case CLI_OPT_DEVICE: dev.device = optarg; break;
        case CLI_OPT_THREADS: dev.threads = optarg; break;
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
            if (target_select_from_name(optarg, &job.select) != 0) return cli_fail("generate");
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
    if (!input != !output) {
        fprintf(stderr, "retort generate: --input and --out go together\n");
        return 2;
    }
    const Backend *be = cli_backend(&dev);
    if (!be) return cli_fail("generate");
    Tokenizer *tok = tokenizer_load(tok_spec);
    if (!tok) return cli_fail("generate");
    GPT *m = model_load_hf(model_dir, be);
    if (!m) return cli_fail("generate");
    if (gpt_config(m)->vocab_size < tok->vocab_size) {
        err_set("%s: model vocab_size %d is smaller than the tokenizer's %d", model_dir,
                gpt_config(m)->vocab_size, tok->vocab_size);
        return cli_fail("generate");
    }
    so.eos_id = ignore_eos ? -1 : tok->eos_id;
    if (input || output) {
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
        return rc == 0 ? 0 : cli_fail("generate");
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
