/* cli/cmd_export.c — `retort export --merge-lora`: fold a PEFT adapter into
 * its base model and write a plain Hugging Face checkpoint. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "model/lora.h"
#include "model/model_io.h"
#include "util/util.h"

static void usage_export(FILE *f) {
    fprintf(f,
            "usage: retort export --model DIR --merge-lora ADAPTER_DIR --out DIR\n\n"
            "Merges a LoRA adapter (PEFT format) into its base model and writes a plain\n"
            "Hugging Face checkpoint (model.safetensors + config.json).\n\n"
            "options:\n"
            "  -m, --model DIR           the base checkpoint\n"
            "      --merge-lora DIR      the adapter (adapter_model.safetensors + "
            "adapter_config.json)\n"
            "  -o, --out DIR             where the merged checkpoint goes\n"
            "      --dtype TYPE          weights written: source (the base's torch_dtype,\n"
            "                            the default), float32, bfloat16 or float16\n"
            "      --max-shard-size GB   weights past this go into shards (default 5)\n"
            "      --force               merge even into a base other than the one the adapter\n"
            "                            records having been trained on\n"
            CLI_HELP_DEVICE
            "                            (cuda merges in bf16: the weights written are "
            "rounded to bf16)\n"
            CLI_HELP_THREADS
            "  -h, --help                this help\n");
}

int cmd_export(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"merge-lora", required_argument, 0, 'a'},
                                         {"out", required_argument, 0, 'o'},
                                         {"force", no_argument, 0, 'f'},
                                         {"dtype", required_argument, 0, 'd'},
                                         {"max-shard-size", required_argument, 0, 's'},
                                         CLI_DEVICE_OPTIONS,
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_dir = NULL, *adapter = NULL, *out = NULL, *dtype = "source";
    double shard_gb = 5;
    CliDevice dev = {0};
    int c, force = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'a': adapter = optarg; break;
        case 'o': out = optarg; break;
        case 'f': force = 1; break;
        case 'd': dtype = optarg; break;
        case 's': {
            char *end;
            shard_gb = strtod(optarg, &end);
            if (*end || !(shard_gb > 0) || shard_gb > 1e6) {
                err_set("--max-shard-size '%s': give a positive number of GB (10^9 bytes)", optarg);
                return cli_fail("export");
            }
            break;
        }
        case CLI_OPT_DEVICE: dev.device = optarg; break;
        case CLI_OPT_THREADS: dev.threads = optarg; break;
        case 'h': usage_export(stdout); return 0;
        default: usage_export(stderr); return 2;
        }
    }
    if (!model_dir || !adapter || !out) {
        usage_export(stderr);
        return 2;
    }
    static const char *const dtypes[] = {"float32", "source", "bfloat16", "float16"}; /* HfSaveDtype */
    HfSaveOptions save = {.source_dir = model_dir, .max_shard_bytes = (uint64_t)(shard_gb * 1e9)};
    int known = 0;
    for (int i = 0; i < 4; i++)
        if (!strcmp(dtype, dtypes[i])) save.dtype = (HfSaveDtype)i, known = 1;
    if (!known) {
        err_set("--dtype '%s' is not one of source, float32, bfloat16, float16", dtype);
        return cli_fail("export");
    }
    const Backend *be = cli_backend(&dev);
    if (!be) return cli_fail("export");
    GPT *m = model_load_hf(model_dir, be);
    int rc = m ? lora_load_peft_ex(m, adapter, !force) : -1;
    if (rc == LORA_OTHER_BASE)
        err_set("%s (--model %s); if you know they fit, --force merges it anyway", err_msg(),
                model_dir);
    if (rc == 0) {
        gpt_lora_merge(m);
        /* the merged checkpoint keeps the base's tokenizer record and files,
         * the non-model keys of its config.json and its generation_config.json */
        char tok[512];
        rc = model_tokenizer_name(model_dir, tok, sizeof tok) == 0 && mkdir_p(out) == 0 &&
                     model_save_hf_ex(m, out, &save) == 0 &&
                     model_tokenizer_save(out, tok, model_dir) == 0
                 ? 0
                 : -1;
    }
    gpt_free(m);
    if (rc != 0) return cli_fail("export");
    printf("wrote %s: %s with the adapter %s merged\n", out, model_dir, adapter);
    return 0;
}
