/* cli/cli.c — what every command shares: the error exit, the device a model
 * runs on (--device and --threads, turned into a backend the way `retort
 * train` turns train.device and train.threads into one), and `retort device`,
 * which says whether that device can be cuda on this machine and, if not, why. */
#include "cli/cli.h"

#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "util/util.h"

int cli_fail(const char *cmd) {
    fprintf(stderr, "retort %s: error: %s\n", cmd, err_msg());
    return 1;
}

int cli_usage_fail(const char *cmd) {
    fprintf(stderr, "retort %s: error: %s\n", cmd, err_msg());
    return 2;
}

int cli_int(const char *option, const char *text, long min, long max, int *out) {
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end || errno || v < min || v > max)
        return err_set("%s wants a whole number from %ld to %ld, not '%s'", option, min, max,
                       text);
    *out = (int)v;
    return 0;
}

int cli_double(const char *option, const char *text, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno == ERANGE || !isfinite(v) || v < min || v > max) {
        char range[96];
        if (min <= -DBL_MAX && max >= DBL_MAX) snprintf(range, sizeof range, "a finite number");
        else if (max >= DBL_MAX) snprintf(range, sizeof range, "a finite number >= %g", min);
        else snprintf(range, sizeof range, "a number from %g to %g", min, max);
        return err_set("%s wants %s, not '%s'", option, range, text);
    }
    *out = v;
    return 0;
}

int cli_chat_open(const CliChat *chat, const char *model_dir, const Tokenizer *tok,
                  ChatPrompt *cp) {
    memset(cp, 0, sizeof *cp);
    if (!chat->on && !chat->path) return 0;
    const char *path = chat->path ? chat->path : model_dir;
    if (!chat->path && !chat_template_in_dir(model_dir))
        return err_set("--chat: %s has no chat template (no chat_template.jinja, no "
                       "\"chat_template\" in tokenizer_config.json); give one with "
                       "--chat-template PATH",
                       model_dir);
    return chat_prompt_open(cp, path, tok);
}

int cli_default_new_tokens(int n, int n_positions) {
    int half = n_positions / 2 > 0 ? n_positions / 2 : 1;
    return n < half ? n : half;
}

const Backend *cli_backend(const CliDevice *dev) {
    if (dev->threads) {
        char *end;
        errno = 0;
        long n = strtol(dev->threads, &end, 10);
        if (end == dev->threads || *end || errno || n < 0 || n > 1 << 16) {
            err_set("--threads wants a whole number of CPU threads (0 = all cores), not '%s'",
                    dev->threads);
            return NULL;
        }
        if (n > 0) {
            omp_set_num_threads((int)n);
            openblas_set_num_threads((int)n);
        }
    }
    return backend_by_name(dev->device ? dev->device : "cpu");
}

/* What a researcher checks first on a new machine, and what `make test-gpu`
 * runs before anything else so it fails with the reason, not zero tests. */
int cmd_device(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: retort device\n\n"
               "Prints the CUDA runtime and driver versions, every visible GPU (name, compute\n"
               "capability, memory) and runs a test kernel on the one a single-process run\n"
               "uses (device 0). Exits 1 with the reason when CUDA is unusable: no device, a\n"
               "driver too old for the toolkit, or no kernel image for the GPU.\n");
        return 0;
    }
    if (argc > 1) {
        fprintf(stderr, "retort device: unexpected argument '%s'\n", argv[1]);
        return 2;
    }
#ifdef RETORT_CUDA
    int rc = backend_cuda_probe(stdout);
    fflush(stdout); /* what was found, before why it is not enough */
    return rc == 0 ? 0 : cli_fail("device");
#else
    err_set("this retort was built without CUDA (CUDA=0, or nvcc was not found when it was "
            "built); rebuild on a machine with the CUDA toolkit");
    return cli_fail("device");
#endif
}
