/* experiments/bench/recompute_bytes.c — the activation bytes of each
 * train.recompute mode, exactly as gpt_forward allocates them
 * (gpt_activation_bytes, model/model.h), for a GPT-2 shape:
 *
 *   recompute_bytes [B T [n_layer n_head n_embd vocab]]   (default 4 1024, GPT-2 124M)
 *
 * One markdown row per mode: fp32 (the CPU backend) and bf16 (CUDA) MiB and
 * the ratio to none. Run by experiments/bench/recompute_bench.sh. */
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"
#include "util/util.h"

int main(int argc, char **argv) {
    int B = argc > 2 ? atoi(argv[1]) : 4, T = argc > 2 ? atoi(argv[2]) : 1024;
    GPTConfig c = {.n_layer = 12, .n_head = 12, .n_embd = 768, .vocab_size = 50257,
                   .n_positions = 1024, .layer_norm_epsilon = 1e-5f};
    if (argc > 6) {
        c.n_layer = atoi(argv[3]);
        c.n_head = atoi(argv[4]);
        c.n_embd = atoi(argv[5]);
        c.vocab_size = atoi(argv[6]);
    }
    if (T > c.n_positions) c.n_positions = T;
    printf("| recompute | fp32 (CPU) MiB | bf16 (CUDA) MiB | of none |\n");
    printf("|-----------|---------------:|----------------:|--------:|\n");
    size_t none = 0;
    for (int mode = 0; mode < GPT_RECOMPUTE_COUNT; mode++) {
        size_t f32 = gpt_activation_bytes(&c, B, T, mode, 4, 0);
        size_t bf16 = gpt_activation_bytes(&c, B, T, mode, 2, 0);
        if (!f32 || !bf16) {
            fprintf(stderr, "recompute_bytes: %s\n", err_msg());
            return 1;
        }
        if (mode == 0) none = f32;
        printf("| %-9s | %14.1f | %15.1f | %6.1f%% |\n", gpt_recompute_name(mode),
               f32 / 1048576.0, bf16 / 1048576.0, 100.0 * f32 / none);
    }
    return 0;
}
