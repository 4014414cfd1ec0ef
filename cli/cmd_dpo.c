/* cli/cmd_dpo.c — `retort dpo precompute-ref`: the reference model's summed
 * completion log-probs of every pair of a pref file, computed once and stored
 * in the file (data/pref_batch.h) so DPO training loads no reference model. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/pref_batch.h"
#include "train/objectives/pair_batches.h"
#include "model/model_io.h"
#include "util/progress.h"
#include "util/util.h"

static void usage_dpo(FILE *f) {
    fprintf(f,
            "usage: retort dpo precompute-ref --model DIR --data PAIRS.h5 --seq-len T\n"
            "                                 [--max-prompt-len N] [--max-completion-len N]\n\n"
            "Computes the reference model's summed completion log-probs of every pair once\n"
            "and stores them in the pref file (ref_logp_chosen, ref_logp_rejected), so that\n"
            "training with dpo.reference: precomputed loads no reference model. T and the\n"
            "limits must be the ones training will use (data.seq_len, dpo.max_*); they are\n"
            "recorded in the file and checked when training starts.\n\n"
            "options:\n"
            "  -m, --model DIR           the reference model\n"
            "  -d, --data PAIRS.h5       the pref file (the log-probs are added to it)\n"
            "      --seq-len T           training's data.seq_len\n"
            "      --max-prompt-len N    training's dpo.max_prompt_len (default 0 = off)\n"
            "      --max-completion-len N  training's dpo.max_completion_len (default 0 = off)\n"
            CLI_DEVICE_HELP
            "  -q, --quiet               no progress line and no report\n"
            "  -h, --help                this help\n");
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
                                         CLI_DEVICE_OPTIONS,
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_dir = NULL, *data = NULL;
    int quiet = 0;
    CliDevice dev = {0};
    int T = 0, mp = 0, mc = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:d:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'd': data = optarg; break;
        case 'T': T = atoi(optarg); break;
        case 'p': mp = atoi(optarg); break;
        case 'c': mc = atoi(optarg); break;
        case CLI_OPT_DEVICE: dev.device = optarg; break;
        case CLI_OPT_THREADS: dev.threads = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage_dpo(stdout); return 0;
        default: usage_dpo(stderr); return 2;
        }
    }
    if (!model_dir || !data || T < 1) {
        usage_dpo(stderr);
        return 2;
    }
    const Backend *be = cli_backend(&dev);
    if (!be) return cli_fail("dpo precompute-ref");
    PrefDataset pd;
    if (pref_dataset_open(&pd, data) != 0) return cli_fail("dpo precompute-ref");
    GPT *m = model_load_hf(model_dir, be);
    char own[256]; /* the model's tokenizer (model/model_io.h) must be the data's */
    int bad = m && model_tokenizer_name(model_dir, own, sizeof own) != 0;
    if (m && !bad && tokenizer_same(own, pd.tokenizer) == 0)
        bad = err_set("%s was built with tokenizer %s, but the model %s was trained with %s; its "
                      "log-probs of these ids would mean nothing",
                      data, pd.tokenizer, model_dir, own);
    if (bad) {
        gpt_free(m);
        pref_dataset_close(&pd);
        return cli_fail("dpo precompute-ref");
    }
    if (!m || T > gpt_context_len(gpt_config(m)) || pd.vocab_size > gpt_config(m)->vocab_size) {
        if (m) err_set("%s: seq-len %d or the data's vocab_size %d does not fit the model "
                       "(n_positions %d, vocab_size %d)",
                       model_dir, T, pd.vocab_size, gpt_context_len(gpt_config(m)),
                       gpt_config(m)->vocab_size);
        gpt_free(m);
        pref_dataset_close(&pd);
        return cli_fail("dpo precompute-ref");
    }
    gpt_set_train_mode(m, 0);
    enum { P = 8 }; /* pairs per forward */
    int *in = xmalloc((size_t)2 * P * T * sizeof(int)), *tg = xmalloc((size_t)2 * P * T * sizeof(int));
    float *logp = xmalloc((size_t)2 * P * T * sizeof(float));
    double *ref_c = xmalloc((size_t)pd.n_pairs * sizeof(double));
    double *ref_r = xmalloc((size_t)pd.n_pairs * sizeof(double));
    double sums[2 * P];
    int64_t counts[2 * P];
    Progress *prog = progress_open("dpo precompute-ref", "pairs", pd.n_pairs, quiet);
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
        progress_add(prog, b);
    }
    progress_close(prog, 1);
    int64_t n = pd.n_pairs;
    pref_dataset_close(&pd);
    int rc = pref_dataset_write_ref(data, ref_c, ref_r, n, model_dir, T, mp, mc);
    if (rc == 0 && !quiet)
        printf("wrote reference log-probs of %lld pairs into %s (model %s, seq_len %d, "
               "max_prompt_len %d, max_completion_len %d)\n",
               (long long)n, data, model_dir, T, mp, mc);
    free(in);
    free(tg);
    free(logp);
    free(ref_c);
    free(ref_r);
    gpt_free(m);
    return rc == 0 ? 0 : cli_fail("dpo precompute-ref");
}
