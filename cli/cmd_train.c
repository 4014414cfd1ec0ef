/* cli/cmd_train.c — `retort train` (one run from a YAML config plus --set
 * overrides, on one process or as a rank of a data-parallel launch) and
 * `retort stages` (a multi-stage plan, train/stages.h, in one process). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/stages.h"
#include "train/trainer.h"
#include "util/util.h"

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
    if (train_run(&cfg, &topt) == 0) {
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
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = NULL;
    int resume = 0, quiet = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:rqh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'r': resume = 1; break;
        case 'q': quiet = 1; break;
        case 'h':
            printf("usage: retort stages -c STAGES.yaml [--resume] [--quiet]\n\n"
                   "Runs a multi-stage training plan (GLPFT: a global stage on all roles, then "
                   "one\nstage per role started from it). See configs/glpft.yaml.\n");
            return 0;
        default: return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "retort stages: -c STAGES.yaml is required\n");
        return 2;
    }
    /* Each rank would train every stage on its own into the same directories,
     * and without dist_init its GPU would be device 0 on all of them. */
    DistWorld w;
    if (dist_discover(&w) != 0) return cli_fail("stages");
    if (w.world > 1) {
        err_set("the %s launch started rank %d of %d, but stages run in one process; start "
                "retort stages without the launcher, or run each stage with retort train under "
                "it",
                w.launcher, w.rank, w.world);
        return cli_fail("stages");
    }
    StagesPlan *p = xmalloc(sizeof *p);
    int rc = stages_load(p, path);
    if (rc == 0) {
        train_install_signal_handlers();
        rc = stages_run(p, resume, quiet);
    }
    free(p);
    return rc == 0 ? 0 : cli_fail("stages");
}
