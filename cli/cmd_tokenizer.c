/* cli/cmd_tokenizer.c — `retort tokenizer train|encode`: train a byte-level
 * BPE into a tokenizer.json, or print the ids (or the encode speed) of a text
 * under any tokenizer spec. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "data/bpe.h"
#include "data/tokenizer.h"
#include "util/util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: retort tokenizer train --vocab-size N CORPUS -o OUT.json [-q]\n"
            "       retort tokenizer encode --tokenizer SPEC (--text TEXT | --input FILE) "
            "[--bench R]\n\n"
            "train   learns a byte-level BPE (GPT-2 pre-tokenizer, 256 byte tokens, then merges\n"
            "        of the most frequent pairs) from the text file CORPUS and writes a Hugging\n"
            "        Face tokenizer.json with N tokens, \"<|endoftext|>\" (the last id) included.\n"
            "encode  prints the ids of TEXT or of FILE (- for standard input), space separated.\n"
            "        SPEC is \"bytes\", a tokenizer.json, or a directory with tokenizer.json,\n"
            "        encoder.json + vocab.bpe, or vocab.json + merges.txt.\n\n"
            "options:\n"
            "      --vocab-size N      train: tokens in the result, at least 257\n"
            "  -o, --out FILE          train: the tokenizer.json to write\n"
            "  -q, --quiet             train: no progress on standard error\n"
            "  -t, --tokenizer SPEC    encode: the tokenizer\n"
            "      --text TEXT         encode: the text itself\n"
            "  -i, --input FILE        encode: a file to encode\n"
            "      --bench R           encode: print throughput instead of ids — the best of R\n"
            "                          single-threaded runs, each on a freshly loaded tokenizer\n"
            "                          (empty cache), timed in CPU seconds\n"
            "  -h, --help              this help\n");
}

static int tokenizer_train_cmd(int argc, char **argv) {
    static const struct option opts[] = {{"vocab-size", required_argument, 0, 'V'},
                                         {"out", required_argument, 0, 'o'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *out = NULL;
    long vocab = 0;
    int quiet = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'V': {
            char *end;
            vocab = strtol(optarg, &end, 10);
            if (*end || end == optarg || vocab <= 0 || vocab > (1L << 30)) {
                fprintf(stderr, "retort tokenizer train: --vocab-size wants a positive integer, "
                                "not '%s'\n", optarg);
                return 2;
            }
            break;
        }
        case 'o': out = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || !out || vocab == 0) {
        fprintf(stderr, "retort tokenizer train: give --vocab-size N, one CORPUS file and -o "
                        "OUT.json (see --help)\n");
        return 2;
    }
    if (bpe_train(argv[optind], (int)vocab, out, quiet ? NULL : stderr) != 0)
        return cli_fail("tokenizer train");
    return 0;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_input(const char *path, size_t *len) {
    if (strcmp(path, "-") != 0) return read_file(path, len);
    size_t cap = 1 << 16, n = 0, got;
    char *buf = xmalloc(cap);
    while ((got = fread(buf + n, 1, cap - n, stdin)) > 0)
        if ((n += got) == cap) buf = xrealloc(buf, cap *= 2);
    *len = n;
    return buf;
}

static int bench(const char *spec, const char *text, size_t len, int reps) {
    double best = 1e300;
    int64_t n = 0;
    for (int r = 0; r < reps; r++) {
        Tokenizer *tok = tokenizer_load(spec);
        if (!tok) return cli_fail("tokenizer encode");
        uint32_t *ids = NULL;
        int64_t cap = 0;
        double t0 = cpu_seconds();
        n = tok->encode(tok, text, len, &ids, &cap, 0);
        double dt = cpu_seconds() - t0;
        if (dt < best) best = dt;
        free(ids);
        tokenizer_free(tok);
    }
    printf("%zu bytes -> %lld tokens, best of %d: %.4f s, %.2f MB/s\n", len, (long long)n, reps,
           best, best > 0 ? (double)len / 1e6 / best : 0.0);
    return 0;
}

static int tokenizer_encode_cmd(int argc, char **argv) {
    static const struct option opts[] = {
        {"tokenizer", required_argument, 0, 't'}, {"text", required_argument, 0, 'T'},
        {"input", required_argument, 0, 'i'},     {"bench", required_argument, 0, 'b'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    const char *spec = NULL, *text_arg = NULL, *input = NULL;
    int reps = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "t:i:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': spec = optarg; break;
        case 'T': text_arg = optarg; break;
        case 'i': input = optarg; break;
        case 'b':
            reps = atoi(optarg);
            if (reps < 1) {
                fprintf(stderr, "retort tokenizer encode: --bench wants a count >= 1\n");
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!spec || !text_arg == !input || optind != argc) {
        fprintf(stderr, "retort tokenizer encode: give --tokenizer SPEC and one of --text or "
                        "--input (see --help)\n");
        return 2;
    }
    size_t len = 0;
    char *owned = NULL;
    const char *text = text_arg;
    if (input) {
        text = owned = read_input(input, &len);
        if (!owned) return cli_fail("tokenizer encode");
    } else {
        len = strlen(text_arg);
    }
    int rc = 0;
    if (reps > 0) {
        rc = bench(spec, text, len, reps);
    } else {
        Tokenizer *tok = tokenizer_load(spec);
        if (!tok) {
            free(owned);
            return cli_fail("tokenizer encode");
        }
        uint32_t *ids = NULL;
        int64_t cap = 0, n = tok->encode(tok, text, len, &ids, &cap, 0);
        for (int64_t k = 0; k < n; k++) printf(k ? " %u" : "%u", ids[k]);
        printf("\n");
        free(ids);
        tokenizer_free(tok);
    }
    free(owned);
    if (fflush(stdout) != 0) {
        perror("retort tokenizer encode: standard output");
        rc = 1;
    }
    return rc;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && !strcmp(argv[1], "train")) return tokenizer_train_cmd(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "encode"))
        return tokenizer_encode_cmd(argc - 1, argv + 1);
    fprintf(stderr, "usage: retort tokenizer train|encode ... (see retort tokenizer --help)\n");
    return 2;
}
