/* cli/cmd_train.c — `retort train` (one run from a YAML config plus --set
 * overrides, on one process or as a rank of a data-parallel launch) and
 * `retort stages` (a multi-stage plan, train/stages.h, in one process).
 * Both lend the trainer generation-based evaluation (eval.generate_every):
 * eval/evaluate.c on the live model, which train/ may not reach itself. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "eval/answer.h"
#include "eval/evaluate.h"
#include "model/model_io.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/stages.h"
#include "train/trainer.h"
#include "util/util.h"

/* ---------------------------------------------- generation-based evaluation */

/* What gen/<name> can be: retort eval's metrics (eval/evaluate.h), in the
 * order they are logged. */
static const char *const GEN_NAMES[] = {"bleu", "chrf", "exact_match", "rouge_l",
                                        "token_f1", "ppl", "accuracy"};
#define N_GEN (int)(sizeof GEN_NAMES / sizeof *GEN_NAMES)

typedef struct {
    GenEvalMetric metrics[N_GEN];
    Tokenizer *tok;            /* loaded at the first pass, for tok_key */
    char tok_key[3 * CFG_STR]; /* model.init, eval.generate_tokenizer, vocab */
} GenEvalCtx;

/* The tokenizer of the run for eval: model.init's, or eval.generate_tokenizer
 * (which must be the run's when that is known), or the byte tokenizer. */
static Tokenizer *gen_tokenizer(GenEvalCtx *g, const Config *cfg, const GPT *m,
                                const char *run_tok) {
    const char *init = cfg->model.init, *spec = cfg->eval.generate_tokenizer;
    int V = gpt_config(m)->vocab_size;
    char key[sizeof g->tok_key];
    snprintf(key, sizeof key, "%s\n%s\n%d", init, spec, V);
    if (g->tok && !strcmp(key, g->tok_key)) return g->tok;
    tokenizer_free(g->tok);
    g->tok = NULL;
    Tokenizer *tok = NULL;
    if (init[0]) {
        tok = model_tokenizer_load(init, spec[0] ? spec : NULL, V);
    } else if (spec[0]) {
        tok = tokenizer_load(spec);
        if (tok && tokenizer_same(tok->name, run_tok) == 0) {
            err_set("eval.generate_tokenizer %s is %s, but the run trains with %s", spec,
                    tok->name, run_tok);
            tokenizer_free(tok);
            tok = NULL;
        } else if (tok && tok->vocab_size > V) {
            err_set("eval.generate_tokenizer %s has %d ids, more than the model's %d", spec,
                    tok->vocab_size, V);
            tokenizer_free(tok);
            tok = NULL;
        }
    } else if (tokenizer_kind(run_tok) == TOKENIZER_BPE) {
        err_set("the run trains with the tokenizer %s and has no model.init to take it from; "
                "set eval.generate_tokenizer to its tokenizer.json (or directory)", run_tok);
    } else if (V < 257) {
        err_set("no tokenizer for generation-based evaluation: the model's vocabulary (%d) is "
                "smaller than the byte tokenizer's 257; set eval.generate_tokenizer", V);
    } else {
        tok = tokenizer_bytes();
    }
    if (!tok) {
        char why[3000];
        snprintf(why, sizeof why, "%s", err_msg());
        err_set("eval.generate_tokenizer: %s", why);
        return NULL;
    }
    g->tok = tok;
    snprintf(g->tok_key, sizeof g->tok_key, "%s", key);
    return tok;
}

/* cfg's eval.generate_* as an EvalJob (answer spec, if any, in *answer). */
static int gen_job(const Config *cfg, EvalJob *job, AnswerSpec **answer) {
    memset(job, 0, sizeof *job);
    *answer = NULL;
    job->input = cfg->eval.generate_input;
    job->reference_field = cfg->eval.generate_reference_field;
    job->gen.prompt_field = cfg->eval.generate_prompt_field;
    job->gen.sample = (SampleOptions){cfg->eval.generate_max_new_tokens, cfg->eval.generate_temperature,
                                      cfg->eval.generate_top_k, cfg->eval.generate_top_p, -1, NULL, NULL};
    job->gen.samples = 1;
    job->gen.beams = cfg->eval.generate_beams;
    job->gen.length_penalty = 1.0;
    job->gen.seed = (uint64_t)cfg->eval.generate_seed;
    job->gen.quiet = 1;
    if (cfg->eval.generate_stop[0]) {
        job->gen.stop[0] = cfg->eval.generate_stop;
        job->gen.n_stop = 1;
    }
    job->max_lines = cfg->eval.generate_max_lines;
    job->quiet = 1;
    if (sample_options_check(&job->gen.sample) != 0 ||
        beam_options_check(job->gen.beams, job->gen.length_penalty) != 0) {
        char why[2000];
        snprintf(why, sizeof why, "%s", err_msg());
        return err_set("eval.generate_*: %s (the decoding keys eval.generate_max_new_tokens, "
                       "temperature, top_k, top_p, beams)", why);
    }
    if (cfg->eval.generate_answer[0]) {
        if (!(*answer = answer_spec_parse(cfg->eval.generate_answer))) {
            char why[2000];
            snprintf(why, sizeof why, "%s", err_msg());
            return err_set("eval.generate_answer: %s", why);
        }
        job->answer = *answer;
        if (cfg->eval.generate_answer_field[0]) job->answer_field = cfg->eval.generate_answer_field;
    }
    return 0;
}

static int gen_check(void *ctx, const Config *cfg) {
    (void)ctx;
    EvalJob job;
    AnswerSpec *answer;
    int rc = gen_job(cfg, &job, &answer);
    answer_spec_free(answer);
    if (rc != 0) return -1;
    FILE *f = fopen(cfg->eval.generate_input, "r");
    if (!f)
        return err_set("eval.generate_input: cannot open %s: %s", cfg->eval.generate_input,
                       strerror(errno));
    fclose(f);
    if (cfg->eval.generate_chat_template[0] && !cfg->eval.generate_chat)
        return err_set("eval.generate_chat_template is set but eval.generate_chat is off");
    return 0;
}

static int gen_measures(void *ctx, const Config *cfg, int i) {
    (void)ctx;
    return strcmp(GEN_NAMES[i], "accuracy") != 0 || cfg->eval.generate_answer[0] != '\0';
}

static int gen_run(void *ctx, const Config *cfg, GPT *m, const char *run_tok, int step,
                   double *values) {
    (void)step;
    GenEvalCtx *g = ctx;
    Tokenizer *tok = gen_tokenizer(g, cfg, m, run_tok);
    if (!tok) return -1;
    EvalJob job;
    AnswerSpec *answer = NULL;
    ChatPrompt cp = {0};
    int rc = gen_job(cfg, &job, &answer);
    if (rc == 0 && cfg->eval.generate_chat) {
        CliChat chat = {1, cfg->eval.generate_chat_template[0] ? cfg->eval.generate_chat_template
                                                               : NULL};
        rc = cli_chat_open(&chat, cfg->model.init, tok, &cp);
        if (rc != 0) {
            char why[2000];
            snprintf(why, sizeof why, "%s", err_msg());
            err_set("eval.generate_chat: %s", why);
        }
    }
    if (rc == 0) {
        if (cp.tmpl) job.gen.chat = &cp;
        job.gen.sample.eos_id = job.gen.chat ? cp.end_of_turn : tok->eos_id;
        EvalResult r;
        rc = evaluate_jsonl(m, tok, &job, &r);
        for (int i = 0; rc == 0 && i < N_GEN; i++)
            if (eval_result_metric(&r, GEN_NAMES[i], &values[i]) != 0) rc = -1;
    }
    if (cp.tmpl) chat_prompt_close(&cp);
    answer_spec_free(answer);
    return rc;
}

/* The hook both commands lend the trainer (train/trainer.h). */
static GenEvalHook *gen_eval_hook(GenEvalCtx *g) {
    static GenEvalHook hook;
    for (int i = 0; i < N_GEN; i++) {
        g->metrics[i].name = GEN_NAMES[i];
        g->metrics[i].higher_is_better = eval_metric_higher_is_better(GEN_NAMES[i]) == 1;
    }
    hook = (GenEvalHook){g->metrics, N_GEN, gen_check, gen_measures, gen_run, g};
    return &hook;
}

static void usage_train(FILE *f) {
    fprintf(f,
            "usage: retort train -c CONFIG.yaml [options]\n\n"
            "options:\n"
            "  -c, --config FILE     YAML run config (see configs/)\n"
            "  -s, --set KEY=VALUE   override one config key, e.g. --set optim.lr=3e-4 "
            "(repeatable)\n"
            "      --resume          continue from the newest complete checkpoint in "
            "train.out_dir\n"
            "      --init DIR        start from a Hugging Face checkpoint directory (GPT-2, Llama,\n"
            "                        Mistral, Qwen2, Qwen3)\n"
            "                        (same as --set model.init=DIR)\n"
            "      --device NAME     cpu or cuda (same as --set train.device=NAME)\n"
            "      --print-config    print the resolved config and exit\n"
            "  -h, --help            this help\n\n"
            "config keys (section.key, type, default):\n");
    config_print_keys(f);
}

int cmd_train(int argc, char **argv) {
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
    GenEvalCtx gen = {0};
    train_set_gen_eval(gen_eval_hook(&gen));
    int trained = train_run(&cfg, &topt);
    train_set_gen_eval(NULL);
    tokenizer_free(gen.tok);
    if (trained == 0) {
        dist_finalize();
        goto out;
    }
    if (dist_size() > 1) { /* the other ranks would wait for this one forever */
        fprintf(stderr, "retort train (rank %d): error: %s\n", dist_rank(), err_msg());
        dist_abort(1);
    }
failed:
    rc = cli_fail("train");
out:
    for (int i = 0; i < n_sets; i++) free(sets[i]);
    free(sets);
    return rc;
}

int cmd_stages(int argc, char **argv) {
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"resume", no_argument, 0, 'r'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"set", required_argument, 0, 's'},
                                         {"out-dir", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = NULL, *out_dir = NULL;
    int resume = 0, quiet = 0, n_sets = 0, c;
    const char **sets = xmalloc((size_t)(argc + 1) * sizeof *sets);
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:rqs:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'r': resume = 1; break;
        case 'q': quiet = 1; break;
        case 's': sets[n_sets++] = optarg; break;
        case 'o': out_dir = optarg; break;
        case 'h':
            printf("usage: retort stages -c STAGES.yaml [--set KEY=VALUE ...] [--out-dir DIR] "
                   "[--resume] [--quiet]\n\n"
                   "Runs a multi-stage training plan (GLPFT: a global stage on all roles, then "
                   "one\nstage per role started from it). See configs/glpft.yaml.\n\n"
                   "  -s, --set KEY=VALUE  override a config key in every stage (before the "
                   "stage's\n                       own `set`, which wins), e.g. --set "
                   "train.seed=2\n"
                   "  -o, --out-dir DIR    write the stages under DIR instead of the file's "
                   "out_dir\n"
                   "  -r, --resume         continue the first unfinished stage from its newest "
                   "checkpoint\n"
                   "  -q, --quiet          no per-step lines\n");
            free(sets);
            return 0;
        default: free(sets); return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "retort stages: -c STAGES.yaml is required\n");
        free(sets);
        return 2;
    }
    /* Each rank would train every stage on its own into the same directories,
     * and without dist_init its GPU would be device 0 on all of them. */
    DistWorld w;
    if (dist_discover(&w) != 0) {
        free(sets);
        return cli_fail("stages");
    }
    if (w.world > 1) {
        err_set("the %s launch started rank %d of %d, but stages run in one process; start "
                "retort stages without the launcher, or run each stage with retort train under "
                "it",
                w.launcher, w.rank, w.world);
        free(sets);
        return cli_fail("stages");
    }
    StagesPlan *p = xmalloc(sizeof *p);
    int rc = stages_load(p, path);
    for (int k = 0; rc == 0 && k < n_sets; k++) rc = stages_add_common_set(p, sets[k]);
    if (rc == 0 && out_dir) {
        if (strlen(out_dir) >= sizeof p->out_dir)
            rc = err_set("--out-dir %s: path too long", out_dir);
        else
            snprintf(p->out_dir, sizeof p->out_dir, "%s", out_dir);
    }
    free(sets);
    if (rc == 0) {
        train_install_signal_handlers();
        GenEvalCtx gen = {0};
        train_set_gen_eval(gen_eval_hook(&gen));
        rc = stages_run(p, resume, quiet);
        train_set_gen_eval(NULL);
        tokenizer_free(gen.tok);
    }
    free(p);
    return rc == 0 ? 0 : cli_fail("stages");
}
