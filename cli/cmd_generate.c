/* cli/cmd_generate.c — `retort generate`: sample or beam-search from a
 * checkpoint, for one --prompt (printed) or every line of a JSONL (written
 * back with its completions, or into a kd dataset; eval/generate_io.h). */
#include <float.h>
#include <getopt.h>
#include <limits.h>
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
            "  -n, --max-new-tokens N    tokens to generate (default 200, or half the model's\n"
            "                            context if less); prompt + N must fit the context\n"
            "  -t, --temperature X       0 = greedy (default 0.8)\n"
            "  -k, --top-k K             sample from the K most likely tokens (default 40; 0 = "
            "all)\n"
            "      --top-p P             sample from the smallest set of tokens with probability "
            ">= P (default 1 = off)\n"
            "      --samples N           number of samples (default 1)\n"
            "      --seed N              random seed (default 1337)\n"
            "      --tokenizer SPEC      tokenizer (default: the model's own: its tokenizer\n"
            "                            files, or the one it records; bytes for an old\n"
            "                            257-token model)\n"
            CLI_DEVICE_HELP
            "      --stats               print tokens generated and decode tokens/s to stderr\n"
            "      --batch N             with --input: sequences decoded at once (key/value\n"
            "                            cache slots; a finished one's slot takes the next\n"
            "                            prompt at once). Default: as many as a quarter of\n"
            "                            the free memory holds at full context, at most 64.\n"
            "                            Outputs do not depend on it\n"
            "      --ignore-eos          keep generating past EOS (benchmarks)\n"
            "      --beams K             beam search with K (at most 64) beams; prints the\n"
            "                            --samples best\n"
            "                            hypotheses with their scores (sum logp / len^penalty)\n"
            "      --length-penalty X    beam search length penalty (default 1.0)\n"
            "  -i, --input FILE          JSONL of prompts (instead of --prompt)\n"
            "  -o, --out FILE            JSONL output for --input\n"
            "      --prompt-field NAME   prompt field of --input lines (default: prompt)\n"
            "      --stop STR            end a completion where STR appears (repeatable; "
            "--input)\n"
            "      --candidates N        a candidate pool per prompt (LMCOR): the greedy output\n"
            "                            plus N samples at -t/--top-k/--top-p (e.g. -t 0.6),\n"
            "                            written as \"completions\": [greedy, s1, ..., sN] with\n"
            "                            \"greedy\": 0; the samples are those --samples N draws\n"
            "                            (--input; not with --samples or --beams)\n"
            "      --ids                 also write \"completion_ids\" (each completion's token\n"
            "                            ids, EOS not included) and \"prompt_ids\" (the tokens\n"
            "                            the model was given) to the JSONL --out\n"
            CLI_CONTEXT_HELP
            CLI_CHAT_HELP "\n"
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
            "  -q, --quiet               with --input: no progress line and no report\n"
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
        {"drop-copies", no_argument, 0, 'c'},       CLI_CONTEXT_OPTIONS,
        CLI_CHAT_OPTIONS,
        {"candidates", required_argument, 0, 'C'}, {"ids", no_argument, 0, 'I'},
        {"quiet", no_argument, 0, 'q'},             {"batch", required_argument, 0, 'b'},
        {0, 0, 0, 0}};
    GenerateJob job = {0};
    CliDevice dev = {0};
    CliChat chat = {0};
    const char *model_dir = NULL, *prompt = "", *tok_spec = NULL;
    int stats = 0, ignore_eos = 0, n_given = 0;
    job.prompt_field = "prompt";
    job.length_penalty = 1.0;
    job.sample = (SampleOptions){200, 0.8, 40, 1.0, -1, NULL, NULL};
    job.samples = 1;
    long seed = 1337;
    int c, bad = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:n:t:k:i:o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'p': prompt = optarg; break;
        case 'n':
            bad = cli_int("--max-new-tokens", optarg, 1, INT_MAX / 2, &job.sample.max_new_tokens);
            n_given = 1;
            break;
        case 't':
            bad = cli_double("--temperature", optarg, 0, DBL_MAX, &job.sample.temperature);
            break;
        case 'k': bad = cli_int("--top-k", optarg, 0, INT_MAX, &job.sample.top_k); break;
        case 'P': bad = cli_double("--top-p", optarg, -DBL_MAX, DBL_MAX, &job.sample.top_p); break;
        case 'S': bad = cli_int("--samples", optarg, 1, INT_MAX / 2, &job.samples); break;
        case 's': seed = atol(optarg); break;
        case 'T': tok_spec = optarg; break;
        case CLI_OPT_DEVICE: dev.device = optarg; break;
        case CLI_OPT_THREADS: dev.threads = optarg; break;
        case 'x': stats = 1; break;
        case 'E': ignore_eos = 1; break;
        case 'B': bad = cli_int("--beams", optarg, 0, INT_MAX, &job.beams); break;
        case 'i': job.input = optarg; break;
        case 'o': job.output = optarg; break;
        case 'F': job.prompt_field = optarg; break;
        case 'l':
            bad = cli_double("--length-penalty", optarg, -DBL_MAX, DBL_MAX, &job.length_penalty);
            break;
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
        case 'L': bad = target_select_from_name(optarg, &job.select); break;
        case 'R': job.reference_field = optarg; break;
        case 'G': job.add_gold = 1; break;
        case 'K': bad = cli_int("--store-topk", optarg, 0, INT_MAX, &job.store_topk); break;
        case 'e': job.drop_empty = 1; break;
        case 'u': job.drop_unfinished = 1; break;
        case 'c': job.drop_copies = 1; break;
        case 'C': bad = cli_int("--candidates", optarg, 1, INT_MAX / 2, &job.candidates); break;
        case 'I': job.write_ids = 1; break;
        case 'b': bad = cli_int("--batch", optarg, 1, 4096, &job.batch); break;
        case CLI_OPT_TRUNCATE: bad = truncate_prompt_from_name(optarg, &job.truncate_prompt); break;
        case CLI_OPT_CLAMP: job.clamp_new_tokens = 1; break;
        case CLI_OPT_CHAT: chat.on = 1; break;
        case CLI_OPT_CHAT_TEMPLATE: chat.path = optarg; break;
        case 'q': job.quiet = 1; break;
        case 'h': usage_generate(stdout); return 0;
        default: usage_generate(stderr); return 2;
        }
        if (bad) return cli_usage_fail("generate");
    }
    if (!model_dir) {
        fprintf(stderr, "retort generate: --model DIR is required\n");
        return 2;
    }
    if (!job.input != !job.output) {
        fprintf(stderr, "retort generate: --input and --out go together\n");
        return 2;
    }
    if (!job.input && (job.candidates > 0 || job.write_ids)) {
        fprintf(stderr, "retort generate: --candidates and --ids write JSONL lines; give "
                        "--input prompts.jsonl --out out.jsonl\n");
        return 2;
    }
    /* the model-free checks first: a bad option is a usage error before any loading */
    if (sample_options_check(&job.sample) != 0 ||
        beam_options_check(job.beams, job.length_penalty) != 0)
        return cli_usage_fail("generate");
    if (job.candidates > 0 && (job.beams > 0 || job.samples > 1)) {
        fprintf(stderr, "retort generate: --candidates %d makes the greedy output plus %d samples "
                        "per prompt; drop %s\n",
                job.candidates, job.candidates, job.beams > 0 ? "--beams" : "--samples");
        return 2;
    }
    job.seed = (uint64_t)seed;
    const Backend *be = cli_backend(&dev);
    if (!be) return cli_fail("generate");
    GPT *m = model_load_hf(model_dir, be);
    if (!m) return cli_fail("generate");
    const GPTConfig *cfg = gpt_config(m);
    Tokenizer *tok = model_tokenizer_load(model_dir, tok_spec, cfg->vocab_size);
    if (!tok) {
        gpt_free(m);
        return cli_fail("generate");
    }
    if (!n_given) job.sample.max_new_tokens = cli_default_new_tokens(200, gpt_context_len(cfg));
    ChatPrompt cp;
    if (cli_chat_open(&chat, model_dir, tok, &cp) != 0) {
        gpt_free(m);
        tokenizer_free(tok);
        return cli_fail("generate");
    }
    if (cp.tmpl) job.chat = &cp;
    job.sample.eos_id = ignore_eos ? -1 : job.chat ? cp.end_of_turn : tok->eos_id;
    if (job.input) {
        int rc = generate_jsonl(m, tok, &job, NULL);
        chat_prompt_close(&cp);
        gpt_free(m);
        tokenizer_free(tok);
        return rc == 0 ? 0 : cli_fail("generate");
    }
    int rc = generate_job_check(&job, cfg);
    uint32_t *ids = NULL;
    int64_t cap = 0;
    int ctx = gpt_context_len(cfg), n = 0, max_new = 0;
    int64_t n_ids = generate_encode_prompt(tok, &job, prompt, &ids, &cap);
    int *tokens = xmalloc((size_t)(ctx + 1) * sizeof(int));
    if (rc == 0 && n_ids < 0) rc = -1;
    if (rc == 0)
        rc = generate_fit_prompt(&job, ctx, tok->eos_id, ids, n_ids, "--prompt", tokens, &n,
                                 &max_new);
    free(ids);
    if (rc != 0) {
        free(tokens);
        chat_prompt_close(&cp);
        gpt_free(m);
        tokenizer_free(tok);
        return cli_fail("generate");
    }
    int *prompt_ids = xmalloc((size_t)n * sizeof(int));
    memcpy(prompt_ids, tokens, (size_t)n * sizeof(int));
    SampleOptions so = job.sample;
    so.max_new_tokens = max_new;
    int samples = job.samples;
    if (job.beams > 0) {
        Hypothesis *h = xcalloc((size_t)samples, sizeof(Hypothesis));
        int got = generate_beam(m, prompt_ids, n, job.beams, max_new, job.length_penalty,
                                so.eos_id, samples, h);
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
    tokens = xrealloc(tokens, (size_t)(n + max_new) * sizeof(int));
    Rng rng;
    rng_seed(&rng, (uint64_t)seed);
    for (int s = 0; s < samples; s++) {
        memcpy(tokens, prompt_ids, (size_t)n * sizeof(int));
        double t0 = now_seconds();
        int len = generate_sample(m, tokens, n, &so, &rng);
        double dt = now_seconds() - t0;
        if (stats)
            fprintf(stderr, "generate: prompt %d tokens, %d new tokens in %.3f s: %.1f tok/s\n",
                    n, len - n, dt, (len - n) / dt);
        uint32_t *out = xmalloc((size_t)len * sizeof(uint32_t));
        int len_out = 0;
        for (int i = n; i < len; i++) {
            if (job.chat && (tokens[i] == so.eos_id || tokens[i] == tok->eos_id)) break;
            if (tokens[i] != tok->eos_id) out[len_out++] = (uint32_t)tokens[i];
        }
        char *text = tokenizer_decode(tok, out, len_out);
        if (samples > 1) printf("--- sample %d\n", s + 1);
        printf("%s%s\n", prompt, text);
        free(text);
        free(out);
    }
    free(tokens);
    free(prompt_ids);
    chat_prompt_close(&cp);
    gpt_free(m);
    tokenizer_free(tok);
    return 0;
}
