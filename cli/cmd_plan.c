/* cli/cmd_plan.c — `retort plan`: what a run needs per rank before it is
 * started. For every sharding choice (none, ZeRO-1, -2, -3) and every
 * recomputation choice (none, attention, block) the memory of parameters,
 * gradients, optimizer state, activations and workspace at the config's
 * micro-batch, whether it fits the device, and the largest micro-batch that
 * does; then the FLOPs of a step and a step time. The numbers come from
 * train/plan.h, which says which of them are exact and which are a model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/h5data.h"
#include "train/config.h"
#include "train/plan.h"
#include "util/util.h"

/* bf16 dense peak of an H100 SXM: the default for --peak-tflops */
#define H100_BF16_TFLOPS 989.0

static void usage_plan(FILE *f) {
    fprintf(f,
            "usage: retort plan -c CONFIG.yaml [options]\n\n"
            "Per-rank memory of a training run under each sharding (none, zero1, zero2, zero3)\n"
            "and recomputation choice (none, attention, block), the largest micro-batch that\n"
            "fits, and the FLOPs and an estimated time of a step. Nothing is allocated.\n\n"
            "options:\n"
            "  -c, --config FILE     YAML run config (the model, data.seq_len, data.batch_size,\n"
            "                        data.grad_accum, train.device, finetune.*)\n"
            "  -s, --set KEY=VALUE   override one config key (repeatable)\n"
            "      --gpus N          GPUs per node (default 1); ranks = gpus x nodes\n"
            "      --nodes N         nodes (default 1)\n"
            "      --gpu-memory SIZE memory of one device, e.g. 80GB (powers of 1000) or 80GiB\n"
            "                        (default: train.memory_limit if set; else 80GB for a cuda\n"
            "                        config, this host's available memory for a cpu one)\n"
            "      --peak-tflops X   the device's dense bf16 peak (default 989, H100 SXM)\n"
            "      --mfu F           assumed fraction of the peak a step achieves (default 0.4)\n"
            "  -h, --help            this help\n");
}

static double gib(size_t b) { return (double)b / 1073741824.0; }

static void fmt_seconds(char *buf, size_t cap, double s) {
    if (s < 1) snprintf(buf, cap, "%.0f ms", s * 1e3);
    else if (s < 120) snprintf(buf, cap, "%.2f s", s);
    else snprintf(buf, cap, "%.1f min", s / 60);
}

/* The data files in host memory (train/plan.h plan_data): per rank, outside
 * the totals above. A file that cannot be read is said, not fatal: the plan
 * of the model stands without it. */
static void print_data(const Config *cfg) {
    PlanData d;
    if (plan_data(cfg, cfg->data.batch_size, &d) != 0) {
        printf("data (host, per rank): not counted: %s\n\n", err_msg());
        return;
    }
    if (d.n_files == 0) return;
    if (d.total >= (size_t)1 << 30)
        printf("data (host memory per rank, outside the totals above; an estimate): %.2f GiB\n",
               gib(d.total));
    else
        printf("data (host memory per rank, outside the totals above; an estimate): %.2f MiB\n",
               d.total / 1048576.0);
    for (int i = 0; i < d.n_files; i++) {
        const PlanDataFile *f = &d.file[i];
        if (!f->sized)
            printf("  %-10s %s: %s\n", f->role, f->path, f->why);
        else if (f->streamed)
            printf("  %-10s %s: %.2f MiB streamed (%lld tokens; %u MiB of chunk cache per column, "
                   "one micro-batch read ahead)\n",
                   f->role, f->path, f->bytes / 1048576.0, (long long)f->n_tokens,
                   DATASET_STREAM_CACHE >> 20);
        else
            printf("  %-10s %s: %.2f MiB loaded (%lld tokens in %lld documents/examples; 4 B per "
                   "token and the file's other columns, on every rank)\n",
                   f->role, f->path, f->bytes / 1048576.0, (long long)f->n_tokens,
                   (long long)f->n_docs);
    }
    printf("\n");
}

static void print_plan(const PlanModel *pm, const Config *cfg, int gpus, int nodes, size_t memory,
                       const char *memory_from, double peak_tflops, double mfu) {
    const GPTConfig *g = &pm->g;
    int world = gpus * nodes, B = cfg->data.batch_size;
    printf("model: %s, %zu parameters (%d layers, %d heads, %d kv heads, %d wide, MLP %d, vocab "
           "%d padded to %d, %s head); %zu trainable%s\n",
           gpt_arch_name(g->arch), pm->n_params, g->n_layer, pm->NH, pm->KVH, g->n_embd, pm->mlp_width,
           g->vocab_size, pm->Vp, g->untied_head ? "untied" : "tied", pm->n_trainable,
           pm->lora_r ? " (LoRA adapters)" : pm->n_trainable < pm->n_params ? " (the rest frozen)" : "");
    printf("run: %s (%s), %d rank%s (%d per node x %d node%s), micro-batch %d x %d tokens%s, "
           "grad_accum %d: global batch %d\n",
           pm->cuda ? "cuda" : "cpu",
           pm->cuda ? "parameters and activations bf16; gradients, AdamW m and v, master weights fp32"
                    : "fp32 throughout",
           world, world == 1 ? "" : "s", gpus, nodes, nodes == 1 ? "" : "s", B, pm->T,
           pm->rows_per_item > 1 ? " (2 rows per pair)" : "", pm->grad_accum,
           B * pm->grad_accum * world);
    printf("memory per rank: %.2f GiB (%s)%s\n\n", gib(memory), memory_from,
           pm->cuda ? "; the plan sets 1.00 GiB aside for the CUDA context and cuBLAS (an assumption)"
                    : "");
    printf("per-rank GiB at micro-batch %d:\n", B);
    if (pm->frozen)
        printf("(2nd model: the frozen %s, %zu parameters, its forward's activations)\n",
               pm->kd_online ? "KD teacher" : "DPO reference", pm->frozen->n_params);
    printf("%-6s %-9s %9s %9s %9s %9s %9s %s%9s  %-4s %s\n", "shard", "recompute", "params",
           "grads", "optim", "activ", "workspace", pm->frozen ? "2nd model " : "", "total", "fits",
           "largest micro-batch");
    for (int s = 0; s < PLAN_SHARD_COUNT; s++)
        for (int r = 0; r < PLAN_RECOMPUTE_COUNT; r++) {
            PlanChoice ch = {s, r, B, world};
            PlanBytes b = plan_memory(pm, ch);
            int max_b = plan_max_micro_batch(pm, ch, memory);
            char second[16] = "";
            if (pm->frozen) snprintf(second, sizeof second, "%9.2f ", gib(b.frozen));
            printf("%-6s %-9s %9.2f %9.2f %9.2f %9.2f %9.2f %s%9.2f  %-4s %d\n",
                   plan_shard_name(s), plan_recompute_name(r), gib(b.params), gib(b.grads),
                   gib(b.optim), gib(b.activations), gib(b.workspace), second, gib(b.total),
                   b.total <= memory ? "yes" : "no", max_b);
        }
    PlanBytes b0 = plan_memory(pm, (PlanChoice){0, 0, B, world});
    printf("\nexact for the CPU's fp32 buffers (tested against its allocator): none, zero1, "
           "zero2 and zero3 under\nevery recompute mode (zero3: once sharded; the start holds "
           "the whole model); the same formula\nwith the CUDA dtypes for cuda (never run on a "
           "GPU: zero1-3 there are written, unverified) (train/plan.h).\nNot counted: the data in host "
           "memory (below), offline KD's top-K buffers, generation's key/value\ncache. A "
           "checkpoint save gathers %.2f GiB of optimizer state in host memory.\n\n",
           gib(b0.checkpoint));

    print_data(cfg);

    double flops = plan_flops_per_step(pm, (PlanChoice){0, 0, B, 1});
    double f6n = plan_flops_6n(pm, (PlanChoice){0, 0, B, 1});
    printf("FLOPs per step: %.4g per rank, %.4g over %d rank%s: every matmul and the causal\n"
           "attention, forward and backward (PaLM's 6N + 12LCT per token, which counts attention's\n"
           "masked half too: %.4g per rank)\n",
           flops, flops * world, world, world == 1 ? "" : "s", f6n);
    char t0[32], ta[32], tb[32];
    double rate = peak_tflops * 1e12 * mfu;
    fmt_seconds(t0, sizeof t0, flops / rate);
    fmt_seconds(ta, sizeof ta, plan_flops_per_step(pm, (PlanChoice){0, 1, B, 1}) / rate);
    fmt_seconds(tb, sizeof tb, plan_flops_per_step(pm, (PlanChoice){0, 2, B, 1}) / rate);
    printf("step time: not measured for this model and device; ASSUMING %.0f%% of %.0f TFLOP/s "
           "(--mfu, --peak-tflops):\n%s per step (recompute attention %s, block %s), communication "
           "not included\n",
           100 * mfu, peak_tflops, t0, ta, tb);
}

int cmd_plan(int argc, char **argv) {
    enum { OPT_GPUS = 0x200, OPT_NODES, OPT_MEMORY, OPT_PEAK, OPT_MFU };
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},   {"set", required_argument, 0, 's'},
        {"gpus", required_argument, 0, OPT_GPUS}, {"nodes", required_argument, 0, OPT_NODES},
        {"gpu-memory", required_argument, 0, OPT_MEMORY},
        {"peak-tflops", required_argument, 0, OPT_PEAK},
        {"mfu", required_argument, 0, OPT_MFU},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *config_path = NULL, *memory_text = NULL;
    const char **sets = xcalloc((size_t)argc + 1, sizeof(char *));
    int n_sets = 0, gpus = 1, nodes = 1, c, rc = 2;
    double peak = H100_BF16_TFLOPS, mfu = 0.4;
    size_t memory = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 's': sets[n_sets++] = optarg; break;
        case OPT_GPUS:
            if (cli_int("--gpus", optarg, 1, 1 << 16, &gpus) != 0) goto usage_failed;
            break;
        case OPT_NODES:
            if (cli_int("--nodes", optarg, 1, 1 << 16, &nodes) != 0) goto usage_failed;
            break;
        case OPT_MEMORY:
            memory_text = optarg;
            if (plan_parse_bytes(optarg, &memory) != 0) {
                char why[512];
                snprintf(why, sizeof why, "%s", err_msg());
                err_set("--gpu-memory: %s", why);
                goto usage_failed;
            }
            break;
        case OPT_PEAK:
            if (cli_double("--peak-tflops", optarg, 1e-3, 1e6, &peak) != 0) goto usage_failed;
            break;
        case OPT_MFU:
            if (cli_double("--mfu", optarg, 1e-3, 1, &mfu) != 0) goto usage_failed;
            break;
        case 'h': usage_plan(stdout); rc = 0; goto out;
        default: usage_plan(stderr); goto out;
        }
    }
    if (optind < argc || !config_path) {
        if (optind < argc) fprintf(stderr, "retort plan: unexpected argument '%s'\n", argv[optind]);
        else fprintf(stderr, "retort plan: give the run's config with -c CONFIG.yaml\n");
        usage_plan(stderr);
        goto out;
    }
    if ((long)gpus * nodes > 1 << 20) {
        err_set("--gpus x --nodes is %ld ranks; at most %d", (long)gpus * nodes, 1 << 20);
        goto usage_failed;
    }
    Config cfg;
    config_defaults(&cfg);
    rc = 1;
    if (config_load_yaml(&cfg, config_path) != 0) goto failed;
    for (int i = 0; i < n_sets; i++)
        if (config_set(&cfg, sets[i]) != 0) goto failed;
    if (cfg.data.batch_size < 1) {
        err_set("data.batch_size must be >= 1 (got %d)", cfg.data.batch_size);
        goto failed;
    }
    PlanModel pm;
    if (plan_model_init(&pm, &cfg) != 0) goto failed;
    char from[128];
    if (memory_text) {
        snprintf(from, sizeof from, "--gpu-memory %s", memory_text);
    } else if (cfg.train.memory_limit[0]) {
        if (plan_parse_bytes(cfg.train.memory_limit, &memory) != 0) {
            plan_model_free(&pm);
            goto failed;
        }
        snprintf(from, sizeof from, "train.memory_limit %s", cfg.train.memory_limit);
    } else if (pm.cuda) {
        memory = (size_t)80e9;
        snprintf(from, sizeof from, "80GB, the default for a cuda config; set --gpu-memory");
    } else {
        size_t total;
        if (backend_cpu()->memory_info(&memory, &total) != 0) {
            plan_model_free(&pm);
            goto failed;
        }
        snprintf(from, sizeof from, "this host's MemAvailable; set --gpu-memory");
    }
    printf("retort plan: %s\n", config_path);
    print_plan(&pm, &cfg, gpus, nodes, memory, from, peak, mfu);
    plan_model_free(&pm);
    rc = 0;
    goto out;
failed:
    rc = cli_fail("plan");
    goto out;
usage_failed:
    rc = cli_usage_fail("plan");
out:
    free(sets);
    return rc;
}
