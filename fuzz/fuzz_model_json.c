/* fuzz/fuzz_model_json.c — the JSON files that come with a model directory:
 * a Hugging Face config.json (model/checkpoint.c, hf_config_read) and a PEFT
 * adapter_config.json (model/lora.c, lora_read_config).
 *
 * The first byte picks the file (even: config.json, odd: adapter_config.json);
 * the rest is its text. Checked beyond "no crash, no leak": an accepted
 * config.json gives a model shape gpt_config_check accepts, with a finite
 * positive layernorm epsilon; an accepted adapter config a rank >= 1, a
 * finite positive alpha and a dropout in [0, 1). */
#include <math.h>

#include "fuzz/fuzz.h"
#include "model/checkpoint.h"
#include "model/lora.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char dir[600], path[600];
    fuzz_path(dir, sizeof dir, "model");
    if (mkdir_p(dir) != 0) FUZZ_CHECK(0, "%s", err_msg());
    err_clear();
    if (data[0] % 2 == 0) {
        fuzz_write(path, sizeof path, "model/config.json", data + 1, size - 1);
        GPTConfig cfg;
        if (hf_config_read(dir, &cfg) != 0) {
            FUZZ_CHECK(strcmp(err_msg(), "unknown error") != 0, "refused without a message");
            return 0;
        }
        FUZZ_CHECK(gpt_config_check(&cfg) == 0, "an accepted config.json fails the model's "
                   "check: %s", err_msg());
        FUZZ_CHECK(isfinite(cfg.layer_norm_epsilon) && cfg.layer_norm_epsilon > 0,
                   "layer_norm_epsilon %g", cfg.layer_norm_epsilon);
    } else {
        fuzz_write(path, sizeof path, "model/adapter_config.json", data + 1, size - 1);
        LoraConfig cfg;
        if (lora_read_config(dir, &cfg) != 0) {
            FUZZ_CHECK(strcmp(err_msg(), "unknown error") != 0, "refused without a message");
            return 0;
        }
        FUZZ_CHECK(cfg.r >= 1, "rank %d", cfg.r);
        FUZZ_CHECK(isfinite(cfg.alpha) && cfg.alpha > 0, "lora_alpha %g", cfg.alpha);
        FUZZ_CHECK(cfg.dropout >= 0 && cfg.dropout < 1, "lora_dropout %g", cfg.dropout);
    }
    return 0;
}
