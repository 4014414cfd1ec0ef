/* tests/test_config.c — the run configuration: defaults, YAML loading and its
 * error messages, --set, cross-field validation, and YAML/JSON round trips.
 *
 * Config files are written under a fresh temporary directory per test. Round
 * trips start from a Config where every field differs from its default and are
 * compared field by field with a list written here by hand, so a key missing
 * from the table in config.c shows up as a field that did not come back. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "train/config.h"
#include "util/util.h"

#define assert_err_has(text) \
    cr_assert(strstr(err_msg(), (text)) != NULL, "error message\n  %s\nlacks\n  %s", err_msg(), (text))

/* Writes text to <fresh temp dir>/name and returns its path in path[cap];
 * the directory goes in dir[cap] so the test can remove it. */
static void write_config(char *dir, char *path, size_t cap, const char *name, const char *text) {
    make_temp_dir(dir, cap, "config");
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* Loads YAML text into c; the file's path lands in path (for message checks). */
static int load_text(Config *c, const char *text, char *path, size_t cap) {
    char dir[512];
    write_config(dir, path, cap, "run.yaml", text);
    int rc = config_load_yaml(c, path);
    rm_rf(dir);
    return rc;
}

static int load(Config *c, const char *text) {
    char path[512];
    return load_text(c, text, path, sizeof path);
}

static void assert_config_eq(const Config *a, const Config *b) {
#define EQ_INT(f) cr_assert_eq(a->f, b->f, #f ": %d != %d", a->f, b->f)
#define EQ_DBL(f) cr_assert(a->f == b->f, #f ": %.17g != %.17g", a->f, b->f)
#define EQ_STR(f) cr_assert_str_eq(a->f, b->f, #f ": '%s' != '%s'", a->f, b->f)
    EQ_INT(model.n_layer);
    EQ_INT(model.n_head);
    EQ_INT(model.n_embd);
    EQ_INT(model.vocab_size);
    EQ_INT(model.n_positions);
    EQ_DBL(model.layer_norm_epsilon);
    EQ_STR(model.init);
    EQ_STR(data.train);
    EQ_STR(data.val);
    EQ_DBL(data.val_fraction);
    EQ_INT(data.seq_len);
    EQ_INT(data.batch_size);
    EQ_INT(data.grad_accum);
    EQ_INT(data.shuffle);
    EQ_STR(objective.type);
    EQ_DBL(optim.lr);
    EQ_DBL(optim.min_lr);
    EQ_INT(optim.warmup_steps);
    EQ_STR(optim.schedule);
    EQ_DBL(optim.weight_decay);
    EQ_DBL(optim.beta1);
    EQ_DBL(optim.beta2);
    EQ_DBL(optim.eps);
    EQ_DBL(optim.grad_clip);
    EQ_INT(train.steps);
    EQ_INT(train.seed);
    EQ_STR(train.device);
    EQ_INT(train.threads);
    EQ_STR(train.out_dir);
    EQ_INT(train.log_every);
    EQ_INT(eval.every);
    EQ_INT(eval.batches);
    EQ_INT(checkpoint.every);
    EQ_INT(checkpoint.keep);
    EQ_INT(dist.zero);
    EQ_INT(dist.zero1);
#undef EQ_INT
#undef EQ_DBL
#undef EQ_STR
}

/* Every field away from its default, with values that are hard to print:
 * doubles with no short decimal form, a subnormal, strings with quotes,
 * backslashes, YAML punctuation, control characters and non-ASCII text. */
static void fill_unusual(Config *c) {
    config_defaults(c);
    c->model.n_layer = 3;
    c->model.n_head = 5;
    c->model.n_embd = 80;
    c->model.vocab_size = 65536;
    c->model.n_positions = 2048;
    c->model.layer_norm_epsilon = 0.1 + 0.2;
    snprintf(c->model.init, sizeof c->model.init, "ckpt/\"gpt2\" \\ small: #1");
    snprintf(c->data.train, sizeof c->data.train, " train\tset\nline2 \xc3\xa9\xe2\x9c\x93 '%s' ", "q");
    snprintf(c->data.val, sizeof c->data.val, "- [not, a, list]");
    c->data.val_fraction = 1.0 / 3.0;
    c->data.seq_len = 77;
    c->data.batch_size = 9;
    c->data.grad_accum = 6;
    c->data.shuffle = 0;
    c->optim.lr = 2.0 / 3.0 * 1e-3;
    c->optim.min_lr = 4.9406564584124654e-324; /* smallest subnormal */
    c->optim.warmup_steps = 17;
    snprintf(c->optim.schedule, sizeof c->optim.schedule, "linear");
    c->optim.weight_decay = 0.0;
    c->optim.beta1 = 0.0;
    c->optim.beta2 = 0.999999999999;
    c->optim.eps = 1e-300;
    c->optim.grad_clip = 123456789.125;
    c->train.steps = 2147483647;
    c->train.seed = 0;
    snprintf(c->train.device, sizeof c->train.device, "cuda");
    c->train.threads = 7;
    snprintf(c->train.out_dir, sizeof c->train.out_dir, "null");
    c->train.log_every = 50;
    c->eval.every = 250;
    c->eval.batches = 2;
    c->checkpoint.every = 500;
    c->checkpoint.keep = 0;
    c->dist.zero = 2;
    c->dist.zero1 = 1;
}

/* ---- defaults ---- */

Test(config, defaults_have_the_documented_values_and_validate_once_train_is_set) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(c.model.n_layer, 12);
    cr_assert_eq(c.model.n_head, 12);
    cr_assert_eq(c.model.n_embd, 768);
    cr_assert_eq(c.model.vocab_size, 50257);
    cr_assert_eq(c.model.n_positions, 1024);
    cr_assert(c.model.layer_norm_epsilon == 1e-5);
    cr_assert_str_eq(c.model.init, "");
    cr_assert(c.data.val_fraction == 0.0);
    cr_assert_eq(c.data.seq_len, 1024);
    cr_assert_eq(c.data.batch_size, 4);
    cr_assert_eq(c.data.grad_accum, 1);
    cr_assert_eq(c.data.shuffle, 1);
    cr_assert_str_eq(c.objective.type, "lm");
    cr_assert(c.optim.lr == 6e-4 && c.optim.min_lr == 6e-5);
    cr_assert_eq(c.optim.warmup_steps, 0);
    cr_assert_str_eq(c.optim.schedule, "cosine");
    cr_assert(c.optim.weight_decay == 0.1 && c.optim.beta1 == 0.9 && c.optim.beta2 == 0.95);
    cr_assert(c.optim.eps == 1e-8 && c.optim.grad_clip == 1.0);
    cr_assert_eq(c.train.steps, 1000);
    cr_assert_eq(c.train.seed, 1337);
    cr_assert_str_eq(c.train.device, "cpu");
    cr_assert_eq(c.train.threads, 0);
    cr_assert_str_eq(c.train.out_dir, "runs/default");
    cr_assert_eq(c.train.log_every, 1);
    cr_assert_eq(c.eval.every, 0);
    cr_assert_eq(c.eval.batches, 10);
    cr_assert_eq(c.checkpoint.every, 0);
    cr_assert_eq(c.checkpoint.keep, 3);

    cr_assert_eq(config_validate(&c), -1, "defaults have no training data");
    assert_err_has("data.train");
    cr_assert_eq(config_set(&c, "data.train=tiny.h5"), 0, "%s", err_msg());
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
}

/* ---- loading YAML ---- */

Test(config, load_sets_exactly_the_listed_values) {
    Config c, expect;
    config_defaults(&c);
    config_defaults(&expect);
    const char *yaml = "# a small run\n"
                       "model:\n"
                       "  n_layer: 4\n"
                       "  layer_norm_epsilon: 1e-5\n"
                       "data:\n"
                       "  train: data/tiny.h5\n"
                       "  shuffle: no\n"
                       "optim:\n"
                       "  lr: 3e-4\n"
                       "  schedule: linear\n"
                       "  beta2: 0.99\n"
                       "train:\n"
                       "  device: \"cuda\"\n"
                       "  seed: 7\n"
                       "eval:\n"
                       "checkpoint: {keep: 0}\n";
    cr_assert_eq(load(&c, yaml), 0, "%s", err_msg());
    expect.model.n_layer = 4;
    expect.model.layer_norm_epsilon = 1e-5;
    snprintf(expect.data.train, sizeof expect.data.train, "data/tiny.h5");
    expect.data.shuffle = 0;
    expect.optim.lr = 3e-4;
    snprintf(expect.optim.schedule, sizeof expect.optim.schedule, "linear");
    expect.optim.beta2 = 0.99;
    snprintf(expect.train.device, sizeof expect.train.device, "cuda");
    expect.train.seed = 7;
    expect.checkpoint.keep = 0;
    assert_config_eq(&c, &expect);
    cr_assert_eq(memcmp(&c, &expect, sizeof c), 0, "same values, different bytes");
}

Test(config, bools_accept_every_documented_spelling) {
    const char *spellings[][2] = {{"true", "1"}, {"yes", "1"}, {"1", "1"}, {"True", "1"},
                                  {"false", "0"}, {"no", "0"}, {"0", "0"}, {"NO", "0"}};
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        Config c;
        config_defaults(&c);
        c.data.shuffle = spellings[i][1][0] == '1' ? 0 : 1;
        char yaml[64];
        snprintf(yaml, sizeof yaml, "data:\n  shuffle: %s\n", spellings[i][0]);
        cr_assert_eq(load(&c, yaml), 0, "%s: %s", spellings[i][0], err_msg());
        cr_assert_eq(c.data.shuffle, spellings[i][1][0] - '0', "%s", spellings[i][0]);
    }
}

Test(config, unknown_key_is_rejected_with_the_closest_key_suggested) {
    Config c;
    config_defaults(&c);
    char path[512], want[600];
    cr_assert_eq(load_text(&c, "model:\n  n_layer: 2\noptim:\n  learning_rate: 3e-4\n", path, sizeof path), -1);
    snprintf(want, sizeof want, "%s:4: unknown key 'optim.learning_rate'; did you mean 'optim.lr'?", path);
    cr_assert_str_eq(err_msg(), want);
    cr_assert_eq(c.model.n_layer, 12, "a failed load must not change the config");

    cr_assert_eq(load(&c, "model:\n  n_layr: 2\n"), -1);
    assert_err_has("did you mean 'model.n_layer'?");
    cr_assert_eq(load(&c, "train:\n  lr: 0.1\n"), -1);
    assert_err_has("unknown key 'train.lr'; did you mean 'optim.lr'?");
    cr_assert_eq(load(&c, "train:\n  max_steps: 10\n"), -1);
    assert_err_has("did you mean 'train.steps'?");
}

Test(config, unknown_key_with_nothing_close_lists_the_keys_of_its_section) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(load(&c, "eval:\n  zzzzzz: 1\n"), -1);
    assert_err_has("unknown key 'eval.zzzzzz'");
    assert_err_has("every, batches");
    cr_assert_null(strstr(err_msg(), "did you mean"), "%s", err_msg());
}

Test(config, unknown_section_is_rejected_with_a_suggestion) {
    Config c;
    config_defaults(&c);
    char path[512], want[600];
    cr_assert_eq(load_text(&c, "model:\n  n_layer: 2\noptimizer:\n  lr: 1e-3\n", path, sizeof path), -1);
    snprintf(want, sizeof want, "%s:3: unknown section 'optimizer'; did you mean 'optim'?", path);
    cr_assert_str_eq(err_msg(), want);
    cr_assert_eq(load(&c, "qqqqqq:\n  a: 1\n"), -1);
    assert_err_has("unknown section 'qqqqqq'; the sections are model, data, objective, kd, dpo, orpo, finetune, dist, optim, train, eval, checkpoint");
}

Test(config, string_where_an_integer_belongs_is_a_type_error) {
    Config c;
    config_defaults(&c);
    char path[512], want[600];
    cr_assert_eq(load_text(&c, "model:\n  n_head: abc\n", path, sizeof path), -1);
    snprintf(want, sizeof want, "%s:2: model.n_head: 'abc' is not an integer", path);
    cr_assert_str_eq(err_msg(), want);
    cr_assert_eq(c.model.n_head, 12);
}

Test(config, fraction_or_exponent_where_an_integer_belongs_is_a_type_error) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(load(&c, "train:\n  steps: 1.5\n"), -1);
    assert_err_has("train.steps: '1.5' is not an integer");
    cr_assert_eq(load(&c, "train:\n  steps: 1e3\n"), -1);
    assert_err_has("'1e3' is not an integer");
    cr_assert_eq(load(&c, "train:\n  steps: 12abc\n"), -1);
    assert_err_has("'12abc' is not an integer");
    cr_assert_eq(c.train.steps, 1000);
}

Test(config, bad_bool_double_and_enum_are_type_errors) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(load(&c, "data:\n  shuffle: maybe\n"), -1);
    assert_err_has("data.shuffle: 'maybe' is not a boolean");
    cr_assert_eq(load(&c, "optim:\n  lr: fast\n"), -1);
    assert_err_has("optim.lr: 'fast' is not a number");
    cr_assert_eq(load(&c, "optim:\n  lr: .inf\n"), -1);
    assert_err_has("'.inf' is not a number");
    cr_assert_eq(load(&c, "optim:\n  schedule: adam\n"), -1);
    assert_err_has("optim.schedule: 'adam' is not one of cosine|linear|constant");
    cr_assert_eq(load(&c, "train:\n  device: gpu\n"), -1);
    assert_err_has("'gpu' is not one of cpu|cuda");
    cr_assert_eq(load(&c, "model:\n  n_layer: ~\n"), -1);
    assert_err_has("model.n_layer has no value");
    cr_assert_eq(c.data.shuffle, 1);
    cr_assert(c.optim.lr == 6e-4);
}

Test(config, out_of_range_values_are_rejected_with_the_range) {
    Config c;
    config_defaults(&c);
    char path[512], want[600];
    cr_assert_eq(load_text(&c, "data:\n  seq_len: 64\nmodel:\n  n_layer: 0\n", path, sizeof path), -1);
    snprintf(want, sizeof want, "%s:4: model.n_layer = 0 is out of range; it must be >= 1", path);
    cr_assert_str_eq(err_msg(), want);
    cr_assert_eq(c.data.seq_len, 1024, "a failed load must not apply the keys before the error");

    cr_assert_eq(load(&c, "optim:\n  beta2: 1.0\n"), -1);
    assert_err_has("optim.beta2 = 1.0 is out of range; it must be in [0, 1)");
    cr_assert_eq(load(&c, "optim:\n  lr: 0\n"), -1);
    assert_err_has("optim.lr = 0 is out of range; it must be > 0");
    cr_assert_eq(load(&c, "data:\n  val_fraction: 0.6\n"), -1);
    assert_err_has("it must be in [0, 0.5]");
    cr_assert_eq(load(&c, "checkpoint:\n  keep: -1\n"), -1);
    assert_err_has("checkpoint.keep = -1 is out of range; it must be >= 0");
    cr_assert_eq(load(&c, "train:\n  steps: 99999999999\n"), -1);
    assert_err_has("train.steps: '99999999999' does not fit in an int");
    cr_assert_eq(load(&c, "optim:\n  grad_clip: 1e999\n"), -1);
    assert_err_has("'1e999' is not a finite number");

    /* the edges themselves are allowed */
    cr_assert_eq(load(&c, "data:\n  val_fraction: 0.5\noptim:\n  beta1: 0\n  min_lr: 0\n"), 0, "%s", err_msg());
    cr_assert(c.data.val_fraction == 0.5 && c.optim.beta1 == 0.0 && c.optim.min_lr == 0.0);
}

Test(config, strings_longer_than_their_buffer_are_rejected) {
    Config c;
    config_defaults(&c);
    char *yaml = xmalloc(CFG_STR + 64);
    int n = snprintf(yaml, CFG_STR + 64, "data:\n  train: ");
    memset(yaml + n, 'a', CFG_STR - 1);
    strcpy(yaml + n + CFG_STR - 1, "\n");
    cr_assert_eq(load(&c, yaml), 0, "%s", err_msg());
    cr_assert_eq(strlen(c.data.train), (size_t)CFG_STR - 1);
    strcpy(yaml + n + CFG_STR - 1, "a\n");
    cr_assert_eq(load(&c, yaml), -1);
    assert_err_has("data.train: the value is too long (1024 bytes; at most 1023)");
    free(yaml);
    cr_assert_eq(load(&c, "train:\n  out_dir: \"\"\n"), -1);
    assert_err_has("train.out_dir must not be empty");
}

Test(config, yaml_syntax_error_reports_line_and_column) {
    Config c;
    config_defaults(&c);
    char path[512], want[600];
    cr_assert_eq(load_text(&c, "model:\n  n_layer: 4\n bad: [\n", path, sizeof path), -1);
    snprintf(want, sizeof want, "%s:3:2: YAML syntax error: did not find expected key", path);
    cr_assert_eq(strncmp(err_msg(), want, strlen(want)), 0, "%s", err_msg());
    cr_assert_eq(load(&c, "model:\n  n_layer: 4\n  n_head: [1\n"), -1);
    assert_err_has(":4:1: YAML syntax error:");
    cr_assert_eq(c.model.n_layer, 12);
}

Test(config, non_scalar_values_and_non_mapping_sections_are_rejected) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(load(&c, "model:\n  n_layer:\n    deep: 1\n"), -1);
    assert_err_has(":3: model.n_layer: expected a single value, found a mapping");
    cr_assert_eq(load(&c, "data:\n  train: [a.h5, b.h5]\n"), -1);
    assert_err_has(":2: data.train: expected a single value, found a list");
    cr_assert_eq(load(&c, "model: 5\n"), -1);
    assert_err_has(":1: section 'model' must be a mapping of keys");
    cr_assert_eq(load(&c, "- model\n- data\n"), -1);
    assert_err_has(":1: expected a mapping of sections");
}

Test(config, duplicate_keys_and_sections_and_extra_documents_are_rejected) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(load(&c, "model:\n  n_layer: 3\n  n_layer: 5\n"), -1);
    assert_err_has(":3: model.n_layer is set twice (first at line 2)");
    cr_assert_eq(load(&c, "model:\n  n_layer: 3\nmodel:\n  n_head: 4\n"), -1);
    assert_err_has(":3: section 'model' appears twice (first at line 1)");
    cr_assert_eq(load(&c, "model:\n  n_layer: 3\n---\nmodel:\n  n_layer: 5\n"), -1);
    assert_err_has("a second YAML document");
    cr_assert_eq(c.model.n_layer, 12);
}

Test(config, missing_file_is_an_error_naming_the_file) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(config_load_yaml(&c, "/nonexistent/retort/run.yaml"), -1);
    assert_err_has("/nonexistent/retort/run.yaml: cannot open config file");
}

Test(config, empty_file_and_empty_sections_change_nothing) {
    Config c, d;
    config_defaults(&c);
    config_defaults(&d);
    cr_assert_eq(load(&c, ""), 0, "%s", err_msg());
    cr_assert_eq(load(&c, "# nothing yet\neval:\n"), 0, "%s", err_msg());
    assert_config_eq(&c, &d);
    cr_assert_eq(load(&c, "model:\n  init: ~\n"), 0, "%s", err_msg());
    cr_assert_str_eq(c.model.init, "");
}

/* ---- --set ---- */

Test(config, set_overrides_what_the_file_loaded) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(load(&c, "model:\n  n_layer: 4\n  n_head: 4\noptim:\n  lr: 1e-3\n"), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "model.n_layer=6"), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "optim.lr=3e-4"), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "data.train=a=b.h5"), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "data.shuffle=false"), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "optim.schedule=constant"), 0, "%s", err_msg());
    cr_assert_eq(c.model.n_layer, 6);
    cr_assert_eq(c.model.n_head, 4, "keys not overridden keep the file's value");
    cr_assert(c.optim.lr == 3e-4);
    cr_assert_str_eq(c.data.train, "a=b.h5", "the value runs to the end, '=' included");
    cr_assert_eq(c.data.shuffle, 0);
    cr_assert_str_eq(c.optim.schedule, "constant");
    cr_assert_eq(config_set(&c, "data.train=ab"), 0);
    cr_assert_str_eq(c.data.train, "ab");
    for (size_t i = 2; i < sizeof c.data.train; i++)
        cr_assert_eq(c.data.train[i], '\0', "byte %zu: a shorter string leaves no tail of the old one", i);
}

Test(config, set_with_bad_syntax_shows_the_expected_form) {
    Config c;
    config_defaults(&c);
    const char *bad[] = {"optim.lr", "lr=3e-4", "=3", ".lr=3", "optim.=3", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(config_set(&c, bad[i]), -1, "'%s' was accepted", bad[i]);
        assert_err_has("expected section.key=value");
    }
    cr_assert(c.optim.lr == 6e-4);
}

Test(config, set_unknown_key_suggests_and_bad_values_are_checked) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(config_set(&c, "optim.learning_rate=3e-4"), -1);
    cr_assert_str_eq(err_msg(), "--set: unknown key 'optim.learning_rate'; did you mean 'optim.lr'?");
    cr_assert_eq(config_set(&c, "optm.lr=3e-4"), -1);
    assert_err_has("did you mean 'optim.lr'?");
    cr_assert_eq(config_set(&c, "model.n_layer=1.5"), -1);
    cr_assert_str_eq(err_msg(), "--set: model.n_layer: '1.5' is not an integer");
    cr_assert_eq(config_set(&c, "optim.beta1=1"), -1);
    cr_assert_str_eq(err_msg(), "--set: optim.beta1 = 1 is out of range; it must be in [0, 1)");
    cr_assert_eq(config_set(&c, "optim.lr="), -1);
    assert_err_has("'' is not a number");
    cr_assert_eq(c.model.n_layer, 12);
    cr_assert(c.optim.beta1 == 0.9);
}

/* ---- validation ---- */

static Config valid_config(void) {
    Config c;
    config_defaults(&c);
    snprintf(c.data.train, sizeof c.data.train, "train.h5");
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    return c;
}

Test(config, validate_requires_n_embd_divisible_by_n_head) {
    Config c = valid_config();
    c.model.n_head = 10;
    cr_assert_eq(config_validate(&c), -1);
    cr_assert_str_eq(err_msg(), "config: model.n_embd (768) must be divisible by model.n_head (10)");
    c.model.n_head = 16;
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
}

Test(config, validate_requires_min_lr_at_most_lr) {
    Config c = valid_config();
    c.optim.min_lr = 1e-3;
    cr_assert_eq(config_validate(&c), -1);
    cr_assert_str_eq(err_msg(), "config: optim.min_lr (0.001) must not exceed optim.lr (0.0006)");
    c.optim.min_lr = c.optim.lr;
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
}

Test(config, memory_limit_is_a_size_with_a_unit) {
    Config c = valid_config();
    cr_assert_eq(config_set(&c, "train.memory_limit=2GB"), 0, "%s", err_msg());
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "train.memory_limit=2 gigs"), 0, "%s", err_msg());
    cr_assert_eq(config_validate(&c), -1);
    cr_assert(strstr(err_msg(), "train.memory_limit") && strstr(err_msg(), "unknown unit 'gigs'"),
              "%s", err_msg());
}

Test(config, validate_requires_training_data) {
    Config c = valid_config();
    c.data.train[0] = '\0';
    cr_assert_eq(config_validate(&c), -1);
    assert_err_has("set data.train in the config or with --set data.train=FILE");
}

Test(config, validate_requires_seq_len_within_n_positions) {
    Config c = valid_config();
    c.data.seq_len = 1025;
    cr_assert_eq(config_validate(&c), -1);
    assert_err_has("data.seq_len (1025) exceeds model.n_positions (1024)");
    c.model.n_positions = 1025;
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
}

Test(config, validate_requires_warmup_within_steps) {
    Config c = valid_config();
    c.optim.warmup_steps = 1001;
    cr_assert_eq(config_validate(&c), -1);
    cr_assert_str_eq(err_msg(), "config: optim.warmup_steps (1001) exceeds train.steps (1000)");
    c.optim.warmup_steps = 1000;
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
}

Test(config, validate_rechecks_ranges_and_enums_of_values_set_in_code) {
    Config c = valid_config();
    c.optim.beta1 = 1.0;
    cr_assert_eq(config_validate(&c), -1);
    assert_err_has("optim.beta1 = 1 is out of range; it must be in [0, 1)");
    c = valid_config();
    snprintf(c.train.device, sizeof c.train.device, "tpu");
    cr_assert_eq(config_validate(&c), -1);
    assert_err_has("'tpu' is not one of cpu|cuda");
    c = valid_config();
    c.data.batch_size = 0;
    cr_assert_eq(config_validate(&c), -1);
    assert_err_has("data.batch_size = 0 is out of range");
}

/* dist.zero picks the stage; the older dist.zero1 means 1 when dist.zero is
 * left at 0 (configs and checkpoints' stored configs from before dist.zero,
 * which have no dist.zero key, load with the stage they ran); 3 runs but not
 * with generation-based evaluation; past 3 is refused with the choices. */
Test(config, dist_zero_and_the_older_zero1) {
    Config c = valid_config();
    cr_assert_eq(c.dist.zero, 0);
    cr_assert_eq(config_dist_zero(&c), 0);
    cr_assert_eq(config_from_json(&c, "{\"dist\": {\"zero1\": true, \"bucket_mb\": 25}}"), 0,
                 "%s", err_msg());
    cr_assert_eq(config_dist_zero(&c), 1, "a stored config with only dist.zero1 is ZeRO-1");
    cr_assert_eq(config_set(&c, "dist.zero=2"), 0, "%s", err_msg());
    cr_assert_eq(config_dist_zero(&c), 2, "dist.zero wins over the older switch");
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    c.dist.zero1 = 0;
    cr_assert_eq(config_dist_zero(&c), 2);
    cr_assert_eq(config_set(&c, "dist.zero=3"), 0, "%s", err_msg());
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    cr_assert_eq(config_dist_zero(&c), 3);
    /* generation runs on rank 0 alone; ZeRO-3's gathers need every rank */
    cr_assert_eq(config_set(&c, "eval.generate_every=5"), 0, "%s", err_msg());
    cr_assert_eq(config_validate(&c), -1);
    assert_err_has("eval.generate_every (5) with dist.zero 3");
    assert_err_has("use dist.zero 2");
    c.eval.generate_every = 0;
    /* so does on-policy KD: each rank samples its own lengths */
    cr_assert_eq(config_set(&c, "objective.type=kd"), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "kd.teacher=some/teacher"), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "kd.on_policy=0.5"), 0, "%s", err_msg());
    cr_assert_eq(config_validate(&c), -1);
    assert_err_has("kd.on_policy 0.5 with dist.zero 3");
    c.kd.on_policy = 0;
    cr_assert_eq(config_set(&c, "objective.type=lm"), 0, "%s", err_msg());
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "dist.zero=4"), 0, "%s", err_msg());
    cr_assert_eq(config_validate(&c), -1);
    assert_err_has("dist.zero 4: choose 0");
    cr_assert_eq(config_set(&c, "dist.zero=-1"), -1);
}

/* ---- round trips ---- */

Test(config, yaml_round_trip_restores_every_field) {
    Config a, b;
    fill_unusual(&a);
    char *yaml = config_to_yaml(&a);
    cr_assert_not_null(yaml);
    cr_assert_not_null(strstr(yaml, "optim:\n  lr: "), "%s", yaml);

    config_defaults(&b);
    b.model.n_layer = 99; /* values the load must overwrite */
    snprintf(b.train.out_dir, sizeof b.train.out_dir, "a much longer directory name than the new one");
    b.data.shuffle = 1;
    char dir[512], path[512];
    write_config(dir, path, sizeof path, "resolved.yaml", yaml);
    int rc = config_load_yaml(&b, path);
    rm_rf(dir);
    cr_assert_eq(rc, 0, "%s\n%s", err_msg(), yaml);
    assert_config_eq(&b, &a);

    /* printing the loaded config gives the same text */
    char *again = config_to_yaml(&b);
    cr_assert_str_eq(again, yaml);
    free(again);
    free(yaml);
}

Test(config, yaml_prints_short_decimal_forms_that_read_back_exactly) {
    Config a;
    config_defaults(&a);
    char *yaml = config_to_yaml(&a);
    cr_assert_not_null(strstr(yaml, "  lr: 0.0006\n"), "%s", yaml);
    cr_assert_not_null(strstr(yaml, "  layer_norm_epsilon: 1e-05\n"), "%s", yaml);
    cr_assert_not_null(strstr(yaml, "  shuffle: true\n"), "%s", yaml);
    cr_assert_not_null(strstr(yaml, "  schedule: \"cosine\"\n"), "%s", yaml);
    free(yaml);
}

Test(config, json_round_trip_restores_every_field) {
    Config a, b;
    fill_unusual(&a);
    char *json = config_to_json(&a);
    cr_assert_not_null(json);
    cr_assert_not_null(strstr(json, "\"optim\": {"), "%s", json);
    config_defaults(&b);
    b.eval.every = 3;
    cr_assert_eq(config_from_json(&b, json), 0, "%s\n%s", err_msg(), json);
    assert_config_eq(&b, &a);
    char *again = config_to_json(&b);
    cr_assert_str_eq(again, json);
    free(again);
    free(json);
}

Test(config, from_json_rejects_unknown_keys_wrong_types_and_bad_json) {
    Config c;
    config_defaults(&c);
    cr_assert_eq(config_from_json(&c, "{\"model\": {\"n_layer\": 2}, \"optim\": {\"learning_rate\": 1e-3}}"), -1);
    cr_assert_str_eq(err_msg(), "config JSON: unknown key 'optim.learning_rate'; did you mean 'optim.lr'?");
    cr_assert_eq(c.model.n_layer, 12, "a failed load must not change the config");
    cr_assert_eq(config_from_json(&c, "{\"optimiser\": {}}"), -1);
    assert_err_has("unknown section 'optimiser'; did you mean 'optim'?");
    cr_assert_eq(config_from_json(&c, "{\"model\": {\"n_layer\": 2.5}}"), -1);
    assert_err_has("model.n_layer: expected an integer, found a real number");
    cr_assert_eq(config_from_json(&c, "{\"data\": {\"shuffle\": 1}}"), -1);
    assert_err_has("data.shuffle: expected true or false, found an integer");
    cr_assert_eq(config_from_json(&c, "{\"optim\": {\"beta1\": 1.5}}"), -1);
    assert_err_has("optim.beta1 = 1.5 is out of range");
    cr_assert_eq(config_from_json(&c, "{\"model\": 3}"), -1);
    assert_err_has("section 'model' must be an object");
    cr_assert_eq(config_from_json(&c, "{\"model\": {\"n_layer\": 2, \"n_layer\": 3}}"), -1);
    assert_err_has("duplicate");
    cr_assert_eq(config_from_json(&c, "{\"model\": {"), -1);
    assert_err_has("config JSON: line 1");
    cr_assert_eq(config_from_json(&c, "{\"optim\": {\"lr\": 1}}"), 0, "%s", err_msg());
    cr_assert(c.optim.lr == 1.0, "an integer is a fine double");
}

/* ---- help ---- */

Test(config, print_keys_lists_every_key_with_type_default_and_help) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    config_print_keys(f);
    fclose(f);
    cr_assert_not_null(strstr(text, "  optim.lr  "), "%s", text);
    cr_assert_not_null(strstr(text, "(double, default 0.0006)  peak learning rate"), "%s", text);
    cr_assert_not_null(strstr(text, "(int, default 12)"), "%s", text);
    cr_assert_not_null(strstr(text, "(cosine|linear|constant, default cosine)"), "%s", text);
    cr_assert_not_null(strstr(text, "(string, default \"runs/default\")"), "%s", text);
    cr_assert_not_null(strstr(text, "(bool, default true)"), "%s", text);
    /* one line per key, and every key printed by to_yaml is listed */
    int lines = 0;
    for (char *p = text; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 106); /* every key once */
    Config c;
    config_defaults(&c);
    char *yaml = config_to_yaml(&c), *save = NULL, section[64] = "";
    for (char *line = strtok_r(yaml, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[64], full[160];
        if (line[0] != ' ') {
            sscanf(line, "%63[^:]", section);
            continue;
        }
        cr_assert_eq(sscanf(line, " %63[^:]", name), 1);
        snprintf(full, sizeof full, "  %s.%s ", section, name);
        cr_assert_not_null(strstr(text, full), "'%s' missing from the listing", full);
    }
    free(yaml);
    free(text);
}

/* ---- the model families ---- */

/* c with data.train set and the given --set assignments applied. */
static Config family_config(const char *file, const char *const *sets) {
    Config c;
    config_defaults(&c);
    if (file) cr_assert_eq(config_load_yaml(&c, file), 0, "%s", err_msg());
    cr_assert_eq(config_set(&c, "data.train=x.h5"), 0);
    for (int i = 0; sets && sets[i]; i++) cr_assert_eq(config_set(&c, sets[i]), 0, "%s", err_msg());
    return c;
}

Test(config, the_family_configs_validate_into_their_model) {
    Config c = family_config("configs/smollm2-135m.yaml", NULL);
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    GPTConfig g;
    cr_assert_eq(config_model(&c, &g), 0, "%s", err_msg());
    cr_expect_eq(g.arch, ARCH_LLAMA);
    cr_expect(g.n_layer == 30 && g.n_head == 9 && g.n_kv_head == 3 && g.n_embd == 576);
    cr_expect(g.intermediate_size == 1536 && g.vocab_size == 49152 && g.n_positions == 8192);
    cr_expect(g.rope_theta == 100000.0 && g.rope_type == ROPE_DEFAULT && g.untied_head == 0);
    cr_expect(g.layer_norm_epsilon == 1e-5f && !g.attn_bias && !g.qk_norm && !g.mlp_bias);

    c = family_config("configs/tiny-llama.yaml", NULL);
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    cr_assert_eq(config_model(&c, &g), 0, "%s", err_msg());
    cr_expect(g.arch == ARCH_LLAMA && g.n_kv_head == 2 && g.untied_head == 1);
    /* the family's fixed parts are filled in */
    const char *qwen2[] = {"model.arch=qwen2", NULL};
    c = family_config("configs/tiny-llama.yaml", qwen2);
    cr_assert_eq(config_model(&c, &g), 0, "%s", err_msg());
    cr_expect(g.arch == ARCH_QWEN2 && g.attn_bias == 1 && g.attn_out_bias == 0 && !g.qk_norm);
    const char *qwen3[] = {"model.arch=qwen3", "model.head_dim=64", "model.attn_bias=true", NULL};
    c = family_config("configs/tiny-llama.yaml", qwen3);
    cr_assert_eq(config_validate(&c), 0, "%s", err_msg());
    cr_assert_eq(config_model(&c, &g), 0, "%s", err_msg());
    cr_expect(g.qk_norm == 1 && g.head_dim == 64 && g.attn_bias == 1 && g.attn_out_bias == 1);
    const char *llama3[] = {"model.rope_scaling=llama3", "model.rope_factor=8", NULL};
    c = family_config("configs/tiny-llama.yaml", llama3);
    cr_assert_eq(config_model(&c, &g), 0, "%s", err_msg());
    cr_expect(g.rope_type == ROPE_LLAMA3 && g.rope_factor == 8 && g.rope_low_freq_factor == 1 &&
              g.rope_high_freq_factor == 4 && g.rope_original_max_pos == 128);
    /* GPT-2 stays GPT-2 */
    c = family_config("configs/tiny.yaml", NULL);
    cr_assert_eq(config_model(&c, &g), 0, "%s", err_msg());
    cr_expect(g.arch == ARCH_GPT2 && g.intermediate_size == 0 && g.rope_theta == 0);
}

static void expect_family_refused(const char *file, const char *const *sets, const char *needle) {
    Config c = family_config(file, sets);
    err_clear();
    cr_assert_eq(config_validate(&c), -1, "accepted %s", sets[0]);
    assert_err_has(needle);
}

Test(config, options_a_family_lacks_are_refused_naming_the_key) {
    const char *gqa[] = {"model.n_kv_head=2", NULL};
    expect_family_refused("configs/tiny.yaml", gqa, "model.n_kv_head");
    const char *untied[] = {"model.tie_word_embeddings=false", NULL};
    expect_family_refused("configs/tiny.yaml", untied, "model.tie_word_embeddings");
    const char *rope[] = {"model.rope_scaling=linear", NULL};
    expect_family_refused("configs/tiny.yaml", rope, "model.rope_scaling");
    const char *q2bias[] = {"model.arch=qwen2", "model.attn_bias=true", NULL};
    expect_family_refused("configs/tiny-llama.yaml", q2bias, "qwen2 always has q/k/v biases");
    const char *mbias[] = {"model.arch=mistral", "model.mlp_bias=true", NULL};
    expect_family_refused("configs/tiny-llama.yaml", mbias, "model.mlp_bias");
    const char *window[] = {"model.sliding_window=64", NULL};
    expect_family_refused("configs/tiny-llama.yaml", window, "llama has no sliding window");
    const char *short_window[] = {"model.arch=mistral", "model.sliding_window=64", NULL};
    expect_family_refused("configs/tiny-llama.yaml", short_window, "model.sliding_window (64)");
    const char *kv[] = {"model.n_kv_head=3", NULL};
    expect_family_refused("configs/tiny-llama.yaml", kv, "n_kv_head");
    const char *odd[] = {"model.head_dim=33", NULL};
    expect_family_refused("configs/tiny-llama.yaml", odd, "even");
    const char *mlp[] = {"model.intermediate_size=0", NULL};
    expect_family_refused("configs/tiny-llama.yaml", mlp, "model.intermediate_size");
}
