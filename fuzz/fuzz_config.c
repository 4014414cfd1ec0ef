/* fuzz/fuzz_config.c — the run config (train/config.c) from arbitrary YAML,
 * and the stages file of `retort stages` (train/stages.c), YAML too.
 *
 * The input is a config file for config_load_yaml. Checked beyond "no crash,
 * no leak": a refused file leaves the config as it was; an accepted one
 * validates (config_validate answers, either way), and its YAML and JSON
 * forms (config_to_yaml, config_to_json) load back to the same config. Each
 * line of the input is also tried as a --set assignment (config_set), and the
 * whole input as a stages file (stages_load). */
#include "fuzz/fuzz.h"
#include "train/config.h"
#include "train/stages.h"

static int same_config(const Config *a, const Config *b) {
    char *x = config_to_yaml(a), *y = config_to_yaml(b);
    int same = strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

static void round_trips(const Config *c) {
    char *yaml = config_to_yaml(c);
    char path[600];
    fuzz_write(path, sizeof path, "again.yaml", yaml, strlen(yaml));
    Config d;
    config_defaults(&d);
    FUZZ_CHECK(config_load_yaml(&d, path) == 0, "config_to_yaml does not load back: %s\n%s",
               err_msg(), yaml);
    FUZZ_CHECK(same_config(c, &d), "config_to_yaml loads back different:\n%s", yaml);
    free(yaml);
    char *json = config_to_json(c);
    config_defaults(&d);
    FUZZ_CHECK(config_from_json(&d, json) == 0, "config_to_json does not load back: %s\n%s",
               err_msg(), json);
    FUZZ_CHECK(same_config(c, &d), "config_to_json loads back different:\n%s", json);
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    fuzz_write(path, sizeof path, "config.yaml", data, size);
    Config c, before;
    config_defaults(&c);
    before = c;
    err_clear();
    if (config_load_yaml(&c, path) != 0) {
        FUZZ_CHECK(strcmp(err_msg(), "unknown error") != 0, "refused without a message");
        FUZZ_CHECK(same_config(&c, &before), "a refused file changed the config");
    } else {
        (void)config_validate(&c);
        round_trips(&c);
    }
    /* every line as a --set assignment, on the defaults */
    char *text = fuzz_cstr(data, size);
    config_defaults(&c);
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        before = c;
        if (config_set(&c, line) != 0)
            FUZZ_CHECK(same_config(&c, &before), "a refused --set changed the config");
    }
    round_trips(&c);
    free(text);
    static StagesPlan plan; /* 2.4 MB: not on the stack */
    err_clear();
    if (stages_load(&plan, path) != 0)
        FUZZ_CHECK(strcmp(err_msg(), "unknown error") != 0, "refused without a message");
    return 0;
}
