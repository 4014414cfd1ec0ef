/* cli/cmd_data.c — `retort data build` (text or JSONL into an HDF5 dataset of
 * schema lm, sft or pref; data/build.h) and `retort data inspect|validate`
 * (data/inspect.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/build.h"
#include "data/h5data.h"
#include "data/inspect.h"
#include "util/util.h"

static void usage_data_build(FILE *f) {
    fprintf(f,
            "usage: retort data build --schema lm|sft|pref --input FILE --out FILE.h5 [options]\n"
            "       retort data inspect FILE.h5 [--examples N] [--tokenizer SPEC]\n"
            "       retort data validate FILE.h5\n\n"
            "Input is JSONL (.jsonl/.json: one object per line) or plain text (lm only; the whole\n"
            "file is one document). Every document ends with EOS. The output is written to\n"
            "FILE.h5.tmp and renamed when complete.\n\n"
            "  lm    {\"text\": ...}\n"
            "  sft   {\"prompt\": ..., \"completion\": ...} (loss on the completion), or chat\n"
            "        {\"messages\": [{\"role\": \"user\"|\"assistant\"|\"system\", \"content\": ...}]}\n"
            "        (with a chat template: the conversation as transformers renders it, loss\n"
            "        on its assistant tokens, \"tools\" passed to the template; plain: one\n"
            "        example per assistant turn, loss on that turn only)\n"
            "  pref  {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...}, text or TRL's\n"
            "        conversational messages\n\n"
            "options:\n"
            "      --schema NAME          lm, sft or pref (default lm)\n"
            "  -i, --input FILE           input file, or - for standard input\n"
            "  -o, --out FILE             output HDF5 file\n"
            "      --tokenizer SPEC       tokenizer (default: bytes — 256 byte ids + EOS)\n"
            "      --text-field NAME      JSONL field for lm (default: text)\n"
            "      --prompt-field NAME    JSONL field for the sft prompt (default: prompt)\n"
            "      --completion-field N   JSONL field for the sft completion (default: "
            "completion)\n"
            "      --messages-field NAME  JSONL field of a chat conversation (default: messages)\n"
            "      --chat-template PATH   the chat template of messages lines and conversational\n"
            "                             pairs: a model directory, tokenizer_config.json or\n"
            "                             .jinja file, or plain (default: the --tokenizer\n"
            "                             directory's template when it has one, else plain)\n"
            "      --role-field NAME      string field tagging each sft example with a role "
            "(GLPFT)\n"
            "      --task-field NAME      string field tagging each sft example with a task "
            "(multi-task)\n"
            "      --train-roles LIST     sft chat: one example per turn of these roles (e.g.\n"
            "                             planner,caller,summarizer; default assistant); the "
            "role\n"
            "                             column holds the turn's role, ids in LIST order\n"
            "      --max-len N            sft: truncate to N tokens, keeping the end of the "
            "prompt and\n"
            "                             the start of the completion; pref: TRL's "
            "max_length (drop a\n"
            "                             pair whose prompt alone has N tokens, keep the "
            "start of\n"
            "                             each response) (default 0 = off)\n"
            "      --chosen-field NAME    pref: field of the preferred completion (default: "
            "chosen)\n"
            "      --rejected-field NAME  pref: field of the other completion (default: "
            "rejected)\n"
            "      --boundary MODE        pref: joint (default; TRL 1.x: prompt + response "
            "encoded\n"
            "                             together, the response starting where the prompt's "
            "own\n"
            "                             encoding stops being a prefix) or separate (TRL "
            "0.x: each\n"
            "                             encoded on its own); recorded in the file\n"
            "      --skip-bad             skip malformed lines (and count them) instead of "
            "failing\n"
            "  -q, --quiet                no report\n"
            "  -h, --help                 this help\n");
}

static int cmd_data_inspect(int argc, char **argv, int validate) {
    static const struct option opts[] = {{"examples", required_argument, 0, 'n'},
                                         {"tokenizer", required_argument, 0, 't'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int examples = 3, c;
    const char *tok = NULL;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:t:h", opts, NULL)) != -1) {
        switch (c) {
        case 'n': examples = atoi(optarg); break;
        case 't': tok = optarg; break;
        case 'h': usage_data_build(stdout); return 0;
        default: usage_data_build(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: retort data %s FILE.h5\n", validate ? "validate" : "inspect");
        return 2;
    }
    int rc = validate ? data_validate(argv[optind]) : data_inspect(argv[optind], examples, tok);
    return rc == 0 ? 0 : cli_fail(validate ? "data validate" : "data inspect");
}

int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "inspect")) return cmd_data_inspect(argc - 1, argv + 1, 0);
    if (argc >= 2 && !strcmp(argv[1], "validate")) return cmd_data_inspect(argc - 1, argv + 1, 1);
    if (argc < 2 || strcmp(argv[1], "build") != 0) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            usage_data_build(stdout);
            return 0;
        }
        fprintf(stderr, "usage: retort data build ... (see retort data build --help)\n");
        return 2;
    }
    argc--;
    argv++;
    static const struct option opts[] = {
        {"schema", required_argument, 0, 'S'},  {"input", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},     {"tokenizer", required_argument, 0, 't'},
        {"text-field", required_argument, 0, 'T'}, {"prompt-field", required_argument, 0, 'P'},
        {"completion-field", required_argument, 0, 'C'}, {"skip-bad", no_argument, 0, 'k'},
        {"quiet", no_argument, 0, 'q'},         {"help", no_argument, 0, 'h'},
        {"messages-field", required_argument, 0, 'M'}, {"chat-template", required_argument, 0, 'H'},
        {"role-field", required_argument, 0, 'R'}, {"max-len", required_argument, 0, 'L'},
        {"task-field", required_argument, 0, 'K'}, {"train-roles", required_argument, 0, 'G'},
        {"chosen-field", required_argument, 0, 'c'}, {"rejected-field", required_argument, 0, 'r'},
        {"boundary", required_argument, 0, 'B'},
        {0, 0, 0, 0}};
    BuildOptions o = {0};
    o.schema = SCHEMA_LM;
    o.tokenizer = "bytes";
    o.text_field = "text";
    o.prompt_field = "prompt";
    o.completion_field = "completion";
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "i:o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            if (schema_from_name(optarg, &o.schema) != 0) return cli_fail("data build");
            break;
        case 'i': o.input = optarg; break;
        case 'o': o.output = optarg; break;
        case 't': o.tokenizer = optarg; break;
        case 'T': o.text_field = optarg; break;
        case 'P': o.prompt_field = optarg; break;
        case 'C': o.completion_field = optarg; break;
        case 'k': o.skip_bad = 1; break;
        case 'M': o.messages_field = optarg; break;
        case 'H': o.chat_template = optarg; break;
        case 'R': o.role_field = optarg; break;
        case 'K': o.task_field = optarg; break;
        case 'G': o.train_roles = optarg; break;
        case 'L': o.max_len = atoll(optarg); break;
        case 'c': o.chosen_field = optarg; break;
        case 'r': o.rejected_field = optarg; break;
        case 'B': o.boundary = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'h': usage_data_build(stdout); return 0;
        default: usage_data_build(stderr); return 2;
        }
    }
    if (!o.input || !o.output) {
        fprintf(stderr, "retort data build: --input and --out are required\n");
        return 2;
    }
    if (data_build(&o) != 0) return cli_fail("data build");
    return 0;
}
