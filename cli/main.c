/* cli/main.c — the `retort` command line: the list of commands and the
 * dispatch to each one's entry point (cli/cli.h).
 *
 *   retort train -c CONFIG [--set section.key=value ...] [--resume] [--init DIR]
 *   retort data build --schema lm|sft --input FILE --out FILE.h5 [...]
 *   retort generate --model DIR --prompt TEXT [--device cpu|cuda] [...]
 *
 * Every command has --help. Errors print what, where and how to fix, and exit 1.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#define RETORT_VERSION "0.1.0"

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
            "The commands that load a model (generate, eval, pairs, agent, export, dpo\n"
            "precompute-ref) run it on --device cpu (default) or cuda, with --threads N CPU\n"
            "threads. Run `retort <command> --help` for the options of a command.\n",
            RETORT_VERSION);
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} COMMANDS[] = {
    {"train", cmd_train},         {"stages", cmd_stages}, {"data", cmd_data},
    {"generate", cmd_generate},   {"eval", cmd_eval},     {"export", cmd_export},
    {"dpo", cmd_dpo},             {"pairs", cmd_pairs},   {"tokenizer", cmd_tokenizer},
    {"agent", cmd_agent},         {"device", cmd_device},
};

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
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(cmd, COMMANDS[i].name)) return COMMANDS[i].run(argc - 1, argv + 1);
    fprintf(stderr, "retort: unknown command '%s'\n\n", cmd);
    usage_main(stderr);
    return 2;
}
