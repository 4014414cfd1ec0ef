/* cli/main.c — the `retort` command line: the list of commands and the
 * dispatch to each one's entry point (cli/cli.h).
 *
 *   retort train -c CONFIG [--set section.key=value ...] [--resume] [--init DIR]
 *   retort data build --schema lm|sft --input FILE --out FILE.h5 [...]
 *   retort generate --model DIR --prompt TEXT [--device cpu|cuda] [...]
 *
 * Every command has --help. Errors print what, where and how to fix, and exit 1.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

#define RETORT_VERSION "0.1.0"

static void usage_main(FILE *f) {
    fprintf(f,
            "retort %s — train and distill decoder language models in C\n\n"
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
            "  explain      explanations by chain of thought, rationalization or CROP (MT-CoT);\n"
            "               explain build: multi-task data (MT-CoT, COLLATE's three modes)\n"
            "  pairs        preference pairs from a model's scored samples (pref dataset)\n"
            "  correct      LMCOR: corrector data from candidates; giant -> corrector rewrite\n"
            "  tokenizer    train a byte-level BPE, or encode text with one\n"
            "  plot         runs' metrics.jsonl against step as an SVG\n"
            "  plan         per-rank memory of a run under each sharding and recomputation,\n"
            "               the largest micro-batch that fits, FLOPs and time of a step\n"
            "  device       the CUDA driver, runtime and GPUs this build sees; fails if unusable\n"
            "  version      print the version\n\n"
            "The commands that load a model (generate, eval, pairs, explain, correct run,\n"
            "agent, export, dpo precompute-ref) run it on --device cpu (default) or cuda, with\n"
            "--threads N CPU threads. Run `retort <command> --help` for the options of a\n"
            "command.\n",
            RETORT_VERSION);
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} COMMANDS[] = {
    {"train", cmd_train},         {"stages", cmd_stages}, {"data", cmd_data},
    {"generate", cmd_generate},   {"eval", cmd_eval},     {"export", cmd_export},
    {"dpo", cmd_dpo},             {"pairs", cmd_pairs},   {"tokenizer", cmd_tokenizer},
    {"agent", cmd_agent},         {"device", cmd_device}, {"plot", cmd_plot},
    {"explain", cmd_explain},
    {"correct", cmd_correct},     {"plan", cmd_plan},
};

/* OpenBLAS picks its kernels by the CPU's model number, and on a CPU it does
 * not know (a virtual machine's "Intel Xeon Processor", a newer model than
 * the library) it falls back to its generic Prescott (SSE3) kernels: on the
 * 2-core AVX-512 Xeon of the README's tables that halved training
 * throughput. The kernels are chosen when the library loads, from
 * OPENBLAS_CORETYPE, so when the user has not set it and the choice is a
 * generic one while the CPU has AVX-512 or AVX2 + FMA, the process starts
 * itself again with the matching core set (once: the variable is then set).
 * Results do not depend on it beyond sgemm's rounding. */
static void choose_blas_core(char **argv) {
    if (getenv("OPENBLAS_CORETYPE")) return;
    const char *core = openblas_get_corename();
    static const char *const generic[] = {"prescott", "core2", "nehalem", "atom", "katmai",
                                          "coppermine", "northwood", "banias", "unknown"};
    int weak = core == NULL;
    for (size_t i = 0; core && i < sizeof generic / sizeof *generic; i++)
        weak |= strcasecmp(core, generic[i]) == 0;
    if (!weak) return;
    __builtin_cpu_init();
    const char *better = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512cd"))
        better = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        better = "Haswell";
    if (!better || setenv("OPENBLAS_CORETYPE", better, 1) != 0) return;
    execv("/proc/self/exe", argv); /* returns only on failure: go on as we are */
    unsetenv("OPENBLAS_CORETYPE");
}

int main(int argc, char **argv) {
    choose_blas_core(argv);
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
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "retort: unknown command '%s'\n\n", cmd);
    usage_main(stderr);
    return 2;
}
