/* cli/commands.c — `retort eval` and `retort export`. */
#include "cli/commands.h"

#include <cblas.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/pref_batch.h"
#include "data/tokenizer.h"
#include "eval/evaluate.h"
#include "model/backend.h"
#include "model/lora.h"
#include "model/model_io.h"
#include "util/util.h"

static int fail(const char *cmd) {
    fprintf(stderr, "retort %s: error: %s\n", cmd, err_msg());
    return 1;
}

static void set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}

/* ------------------------------------------------------------------- eval */

static void usage_eval(FILE *f) {
    fprintf(f,
            "usage: retort eval --model DIR --input FILE.jsonl [options]\n\n"
            "Generates a completion for each line's prompt and scores it against the\n"
            "line's reference: corpus BLEU and chrF (as sacrebleu computes them), exact\n"
            "match, ROUGE-L, token F1, the reference's perplexity given the prompt, and\n"
            "with --samples N > 1 (sampling) the mean self-BLEU of each prompt's samples.\n\n"
            "options:\n"
            "      --model DIR           checkpoint (model.safetensors + config.json)\n"
            "      --adapter DIR         a LoRA adapter to apply on top of --model\n"
            "  -i, --input FILE          JSONL with prompt and reference fields\n"
            "      --prompt-field NAME   (default: prompt)\n"
            "      --reference-field N   (default: reference)\n"
            "      --tokenizer SPEC      (default: bytes)\n"
            "  -n, --max-new-tokens N    (default 64)\n"
            "  -t, --temperature X       0 = greedy (default 0)\n"
            "      --top-k K, --top-p P  sampling filters\n"
            "      --samples N           samples per prompt for self-BLEU (default 1)\n"
            "      --beams K             beam search (the best beam is scored)\n"
            "      --length-penalty X    beam length penalty (default 1)\n"
            "      --stop STR            end completions at STR (repeatable)\n"
            "      --seed S              sampling seed (default 1337)\n"
            "      --predictions FILE    write each line with its prediction (JSONL)\n"
            "      --metrics FILE        write the metrics as JSON\n"
            "      --threads N           CPU threads\n"
            "  -h, --help                this help\n");
}

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},          {"input", required_argument, 0, 'i'},
        {"prompt-field", required_argument, 0, 'P'},   {"reference-field", required_argument, 0, 'R'},
        {"tokenizer", required_argument, 0, 'T'},      {"max-new-tokens", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 't'},    {"top-k", required_argument, 0, 'k'},
        {"top-p", required_argument, 0, 'p'},          {"samples", required_argument, 0, 'S'},
        {"beams", required_argument, 0, 'B'},          {"length-penalty", required_argument, 0, 'l'},
        {"stop", required_argument, 0, 'X'},           {"seed", required_argument, 0, 's'},
        {"predictions", required_argument, 0, 'o'},    {"metrics", required_argument, 0, 'M'},
        {"threads", required_argument, 0, 'j'},        {"adapter", required_argument, 0, 'A'},
        {"quiet", no_argument, 0, 'q'},                {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    EvalJob job = {0};
    job.gen.sample = (SampleOptions){64, 0.0, 0, 1.0, -1, NULL, NULL};
    job.gen.samples = 1;
    job.gen.length_penalty = 1.0;
    job.gen.seed = 1337;
    const char *model_dir = NULL, *tok_spec = "bytes", *metrics = NULL, *adapter = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:n:t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'i': job.input = optarg; break;
        case 'P': job.gen.prompt_field = optarg; break;
        case 'R': job.reference_field = optarg; break;
        case 'T': tok_spec = optarg; break;
        case 'n': job.gen.sample.max_new_tokens = atoi(optarg); break;
        case 't': job.gen.sample.temperature = atof(optarg); break;
        case 'k': job.gen.sample.top_k = atoi(optarg); break;
        case 'p': job.gen.sample.top_p = atof(optarg); break;
        case 'S': job.gen.samples = atoi(optarg); break;
        case 'B': job.gen.beams = atoi(optarg); break;
        case 'l': job.gen.length_penalty = atof(optarg); break;
        case 'X':
            if (job.gen.n_stop == GENERATE_MAX_STOPS || !optarg[0]) {
                fprintf(stderr, "retort eval: at most %d non-empty --stop strings\n",
                        GENERATE_MAX_STOPS);
                return 2;
            }
            job.gen.stop[job.gen.n_stop++] = optarg;
            break;
        case 's': job.gen.seed = (uint64_t)atol(optarg); break;
        case 'o': job.predictions = optarg; break;
        case 'M': metrics = optarg; break;
        case 'j': set_threads(atoi(optarg)); break;
        case 'A': adapter = optarg; break;
        case 'q': job.quiet = 1; break;
        case 'h': usage_eval(stdout); return 0;
        default: usage_eval(stderr); return 2;
        }
    }
    if (!model_dir || !job.input) {
        fprintf(stderr, "retort eval: --model and --input are required\n");
        return 2;
    }
    if (job.gen.sample.max_new_tokens < 1 || job.gen.samples < 1 || job.gen.beams < 0) {
        fprintf(stderr, "retort eval: --max-new-tokens and --samples must be >= 1\n");
        return 2;
    }
    if (job.gen.samples > 1 && job.gen.sample.temperature <= 0)
        fprintf(stderr, "retort eval: note: --samples %d with greedy decoding gives identical "
                        "samples (self-BLEU 100); set --temperature\n",
                job.gen.samples);
    Tokenizer *tok = tokenizer_load(tok_spec);
    if (!tok) return fail("eval");
    GPT *m = model_load_hf(model_dir, backend_cpu());
    if (!m || (adapter && lora_load_peft(m, adapter) != 0)) {
        tokenizer_free(tok);
        gpt_free(m);
        return fail("eval");
    }
    gpt_set_train_mode(m, 0);
    job.gen.sample.eos_id = tok->eos_id;
    job.gen.quiet = 1;
    EvalResult r;
    int rc = evaluate_jsonl(m, tok, &job, &r);
    if (rc == 0) {
        printf("eval: %s on %s (%lld lines, %.1f s)\n", model_dir, job.input, (long long)r.lines,
               r.seconds);
        printf("  BLEU %.2f (BP %.3f, ratio %.3f)  chrF %.2f  exact match %.1f%%\n",
               r.bleu.score, r.bleu.bp, r.bleu.ratio, r.chrf, 100 * r.exact_match);
        printf("  ROUGE-L %.4f  token F1 %.4f  perplexity %.4f (%lld reference tokens)\n",
               r.rouge_l, r.token_f1, r.ppl, (long long)r.ref_tokens);
        if (!isnan(r.self_bleu)) printf("  self-BLEU %.2f over %d samples\n", r.self_bleu,
                                        job.gen.samples);
        if (metrics) rc = eval_result_write_json(&r, metrics);
    }
    gpt_free(m);
    tokenizer_free(tok);
    return rc == 0 ? 0 : fail("eval");
}

/* ----------------------------------------------------------------- export */

static void usage_export(FILE *f) {
    fprintf(f,
            "usage: retort export --model DIR --merge-lora ADAPTER_DIR --out DIR\n\n"
            "Merges a LoRA adapter (PEFT format) into its base model and writes a plain\n"
            "Hugging Face checkpoint (model.safetensors + config.json).\n");
}

int cmd_export(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"merge-lora", required_argument, 0, 'a'},
                                         {"out", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_dir = NULL, *adapter = NULL, *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'a': adapter = optarg; break;
        case 'o': out = optarg; break;
        case 'h': usage_export(stdout); return 0;
        default: usage_export(stderr); return 2;
        }
    }
    if (!model_dir || !adapter || !out) {
        usage_export(stderr);
        return 2;
    }
    GPT *m = model_load_hf(model_dir, backend_cpu());
    int rc = m && lora_load_peft(m, adapter) == 0 ? 0 : -1;
    if (rc == 0) {
        gpt_lora_merge(m);
        rc = mkdir_p(out) == 0 && model_save_hf(m, out) == 0 ? 0 : -1;
    }
    gpt_free(m);
    if (rc != 0) return fail("export");
    printf("wrote %s: %s with the adapter %s merged\n", out, model_dir, adapter);
    return 0;
}

/* -------------------------------------------------------------------- dpo */

static void usage_dpo(FILE *f) {
    fprintf(f,
            "usage: retort dpo precompute-ref --model DIR --data PAIRS.h5 --seq-len T\n"
            "                                 [--max-prompt-len N] [--max-completion-len N]\n\n"
            "Computes the reference model's summed completion log-probs of every pair once\n"
            "and stores them in the pref file (ref_logp_chosen, ref_logp_rejected), so that\n"
            "training with dpo.reference: precomputed loads no reference model. T and the\n"
            "limits must be the ones training will use (data.seq_len, dpo.max_*); they are\n"
            "recorded in the file and checked when training starts.\n");
}

int cmd_dpo(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "precompute-ref") != 0) {
        usage_dpo(argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
        return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    argc--;
    argv++;
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"data", required_argument, 0, 'd'},
                                         {"seq-len", required_argument, 0, 'T'},
                                         {"max-prompt-len", required_argument, 0, 'p'},
                                         {"max-completion-len", required_argument, 0, 'c'},
                                         {"threads", required_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_dir = NULL, *data = NULL;
    int T = 0, mp = 0, mc = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'd': data = optarg; break;
        case 'T': T = atoi(optarg); break;
        case 'p': mp = atoi(optarg); break;
        case 'c': mc = atoi(optarg); break;
        case 'j': set_threads(atoi(optarg)); break;
        case 'h': usage_dpo(stdout); return 0;
        default: usage_dpo(stderr); return 2;
        }
    }
    if (!model_dir || !data || T < 1) {
        usage_dpo(stderr);
        return 2;
    }
    PrefDataset pd;
    if (pref_dataset_open(&pd, data) != 0) return fail("dpo precompute-ref");
    GPT *m = model_load_hf(model_dir, backend_cpu());
    if (!m || T > gpt_config(m)->n_positions || pd.vocab_size > gpt_config(m)->vocab_size) {
        if (m) err_set("%s: seq-len %d or the data's vocab_size %d does not fit the model "
                       "(n_positions %d, vocab_size %d)",
                       model_dir, T, pd.vocab_size, gpt_config(m)->n_positions,
                       gpt_config(m)->vocab_size);
        gpt_free(m);
        pref_dataset_close(&pd);
        return fail("dpo precompute-ref");
    }
    gpt_set_train_mode(m, 0);
    enum { P = 8 }; /* pairs per forward */
    int *in = xmalloc((size_t)2 * P * T * sizeof(int)), *tg = xmalloc((size_t)2 * P * T * sizeof(int));
    float *logp = xmalloc((size_t)2 * P * T * sizeof(float));
    double *ref_c = xmalloc((size_t)pd.n_pairs * sizeof(double));
    double *ref_r = xmalloc((size_t)pd.n_pairs * sizeof(double));
    double sums[2 * P];
    int64_t counts[2 * P];
    for (int64_t first = 0; first < pd.n_pairs; first += P) {
        int b = pd.n_pairs - first < P ? (int)(pd.n_pairs - first) : P;
        /* rows [0, b) chosen, [b, 2b) rejected, as in training */
        for (int k = 0; k < b; k++)
            pref_pair_rows(&pd, first + k, T, mp, mc, in + (size_t)k * T, tg + (size_t)k * T,
                           in + (size_t)(b + k) * T, tg + (size_t)(b + k) * T);
        gpt_forward(m, in, tg, 2 * b, T, logp);
        pref_row_sums(logp, tg, 2 * b, T, sums, counts);
        for (int k = 0; k < b; k++) {
            ref_c[first + k] = sums[k];
            ref_r[first + k] = sums[b + k];
        }
    }
    int64_t n = pd.n_pairs;
    pref_dataset_close(&pd);
    int rc = pref_dataset_write_ref(data, ref_c, ref_r, n, model_dir, T, mp, mc);
    if (rc == 0)
        printf("wrote reference log-probs of %lld pairs into %s (model %s, seq_len %d, "
               "max_prompt_len %d, max_completion_len %d)\n",
               (long long)n, data, model_dir, T, mp, mc);
    free(in);
    free(tg);
    free(logp);
    free(ref_c);
    free(ref_r);
    gpt_free(m);
    return rc == 0 ? 0 : fail("dpo precompute-ref");
}
