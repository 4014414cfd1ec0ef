/* tests/test_tensorboard.c — the TensorBoard event file the trainer writes
 * beside metrics.jsonl (train/tb.h):
 *   - CRC-32C against its published check value;
 *   - a tiny run with validation: every record's framing and both masked
 *     CRCs, the first event's file_version, and every number of every
 *     metrics.jsonl line as a scalar of the same name at the same step
 *     (decoded here, in C, by a minimal protobuf reader);
 *   - train.tensorboard: false writes no event file;
 *   - TensorBoard's own reader agrees (tests/check_tensorboard.py in .venv;
 *     skipped, saying so, without .venv or tensorboard). */
#include <criterion/criterion.h>

#include <glob.h>
#include <jansson.h>
#include <string.h>

#include "data/h5data.h"
#include "tests/testutil.h"
#include "tests/testutil_cli.h"
#include "train/config.h"
#include "train/tb.h"
#include "train/trainer.h"

#define MAX_EVENTS 64
#define MAX_VALUES 16

typedef struct {
    int has_version, has_step;
    char version[32];
    long long step;
    int n_values;
    char tags[MAX_VALUES][64];
    float values[MAX_VALUES];
} Event;

static void make_dataset(const char *path) {
    DatasetWriter *w = dataset_writer_open(path, SCHEMA_LM, 257, 256, 256, "test");
    cr_assert(w, "%s", err_msg());
    Rng r;
    rng_seed(&r, 3);
    uint32_t doc[120];
    for (int d = 0; d < 40; d++) {
        int n = 60 + (int)rng_below(&r, 50);
        for (int i = 0; i < n; i++) doc[i] = (uint32_t)('a' + (i * 5 + d) % 26);
        doc[n] = 256;
        cr_assert_eq(dataset_writer_add(w, doc, NULL, n + 1, -1), 0, "%s", err_msg());
    }
    cr_assert_eq(dataset_writer_close(w), 0, "%s", err_msg());
}

static void run_tiny(const char *dir, const char *out, int tensorboard) {
    char data[600];
    snprintf(data, sizeof data, "%s/data.h5", dir);
    if (!path_exists(data)) make_dataset(data);
    Config c;
    tiny_train_config(&c, data, out);
    c.data.seq_len = 16;
    c.data.val_fraction = 0.2;
    c.optim.warmup_steps = 1;
    c.train.steps = 5;
    c.eval.every = 2;
    c.checkpoint.every = 0;
    c.train.tensorboard = tensorboard;
    train_ok(&c, 0);
}

/* The event files in out; returns how many, the first's path into path. */
static int event_files(const char *out, char *path, size_t cap) {
    char pattern[600];
    snprintf(pattern, sizeof pattern, "%s/events.out.tfevents.*", out);
    glob_t g;
    int n = glob(pattern, 0, NULL, &g) == 0 ? (int)g.gl_pathc : 0;
    if (n > 0) snprintf(path, cap, "%s", g.gl_pathv[0]);
    globfree(&g);
    return n;
}

static uint64_t le(const unsigned char *p, int bytes) {
    uint64_t v = 0;
    for (int i = bytes - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint64_t varint(const unsigned char **p, const unsigned char *end) {
    uint64_t v = 0;
    for (int shift = 0; *p < end; shift += 7) {
        unsigned char c = *(*p)++;
        v |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) return v;
    }
    cr_assert_fail("truncated varint");
    return 0;
}

/* Decodes a Value { tag = 1; simple_value = 2 } into e's next slot. */
static void decode_value(const unsigned char *p, const unsigned char *end, Event *e) {
    cr_assert_lt(e->n_values, MAX_VALUES);
    int k = e->n_values++, has_tag = 0, has_value = 0;
    while (p < end) {
        uint64_t key = varint(&p, end);
        if (key == (1 << 3 | 2)) {
            uint64_t n = varint(&p, end);
            cr_assert(n < sizeof e->tags[k] && p + n <= end);
            memcpy(e->tags[k], p, n);
            e->tags[k][n] = '\0';
            p += n;
            has_tag = 1;
        } else if (key == (2 << 3 | 5)) {
            uint32_t u = (uint32_t)le(p, 4);
            memcpy(&e->values[k], &u, 4);
            p += 4;
            has_value = 1;
        } else {
            cr_assert_fail("unexpected Value field key %llu", (unsigned long long)key);
        }
    }
    cr_assert(has_tag && has_value, "a Value without its tag or simple_value");
}

static void decode_event(const unsigned char *p, const unsigned char *end, Event *e) {
    memset(e, 0, sizeof *e);
    int has_time = 0;
    while (p < end) {
        uint64_t key = varint(&p, end);
        if (key == (1 << 3 | 1)) { /* wall_time */
            uint64_t u = le(p, 8);
            double t;
            memcpy(&t, &u, 8);
            cr_assert_gt(t, 1.6e9, "wall_time %f is not a recent unix time", t);
            p += 8;
            has_time = 1;
        } else if (key == (2 << 3 | 0)) {
            e->step = (long long)varint(&p, end);
            e->has_step = 1;
        } else if (key == (3 << 3 | 2)) {
            uint64_t n = varint(&p, end);
            cr_assert(n < sizeof e->version && p + n <= end);
            memcpy(e->version, p, n);
            p += n;
            e->has_version = 1;
        } else if (key == (5 << 3 | 2)) { /* Summary { repeated Value value = 1 } */
            uint64_t s_len = varint(&p, end);
            const unsigned char *s_end = p + s_len;
            cr_assert(s_end <= end);
            while (p < s_end) {
                cr_assert_eq(varint(&p, s_end), 1 << 3 | 2, "Summary field other than value");
                uint64_t v_len = varint(&p, s_end);
                const unsigned char *v_end = p + v_len;
                cr_assert(v_end <= s_end);
                decode_value(p, v_end, e);
                p = v_end;
            }
        } else {
            cr_assert_fail("unexpected Event field key %llu", (unsigned long long)key);
        }
    }
    cr_assert(has_time, "an Event without wall_time");
}

/* Reads every record of path, checking its framing and CRCs; returns the count. */
static int read_events(const char *path, Event *ev, int max) {
    size_t len;
    unsigned char *buf = (unsigned char *)read_file(path, &len);
    cr_assert(buf, "%s", err_msg());
    size_t at = 0;
    int n = 0;
    while (at < len) {
        cr_assert(at + 12 <= len, "record %d: truncated header", n);
        uint64_t data_len = le(buf + at, 8);
        cr_assert_eq(le(buf + at + 8, 4), tb_masked_crc(tb_crc32c(buf + at, 8)),
                     "record %d: length CRC", n);
        cr_assert(at + 12 + data_len + 4 <= len, "record %d: truncated data", n);
        const unsigned char *data = buf + at + 12;
        cr_assert_eq(le(data + data_len, 4), tb_masked_crc(tb_crc32c(data, data_len)),
                     "record %d: data CRC", n);
        cr_assert_lt(n, max);
        decode_event(data, data + data_len, &ev[n++]);
        at += 12 + data_len + 4;
    }
    free(buf);
    return n;
}

Test(tensorboard, crc32c_check_value) {
    cr_assert_eq(tb_crc32c("123456789", 9), 0xE3069283u); /* the CRC-32C check value */
    cr_assert_eq(tb_crc32c("", 0), 0u);
    uint32_t c = 0x12345678u;
    cr_assert_eq(tb_masked_crc(c), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

Test(tensorboard, every_metrics_number_is_a_scalar_at_its_step, .timeout = 120) {
    char dir[256], out[512], path[1024];
    make_temp_dir(dir, sizeof dir, "tb");
    snprintf(out, sizeof out, "%s/run", dir);
    run_tiny(dir, out, 1);
    cr_assert_eq(event_files(out, path, sizeof path), 1, "one event file in %s", out);

    static Event ev[MAX_EVENTS];
    int n = read_events(path, ev, MAX_EVENTS);
    cr_assert(ev[0].has_version);
    cr_assert_str_eq(ev[0].version, "brain.Event:2");
    cr_assert_eq(ev[0].n_values, 0);

    json_t *lines = metrics_lines(out), *line;
    size_t i;
    int n_val = 0, n_scalars = 0;
    cr_assert_eq((size_t)n, 1 + json_array_size(lines), "%d events for %zu metrics lines", n,
                 json_array_size(lines));
    json_array_foreach(lines, i, line) {
        const Event *e = &ev[1 + i];
        cr_assert(!e->has_version);
        cr_assert_eq(e->step, json_integer_value(json_object_get(line, "step")));
        if (json_object_get(line, "val_loss")) n_val++;
        int want = 0;
        const char *key;
        json_t *v;
        json_object_foreach(line, key, v) {
            if (!strcmp(key, "step") || !json_is_number(v)) continue;
            want++;
            int found = 0;
            for (int k = 0; k < e->n_values; k++)
                if (!strcmp(e->tags[k], key)) {
                    cr_assert_eq(e->values[k], (float)json_number_value(v),
                                 "step %lld %s: %.9g in the event file, %.17g in metrics.jsonl",
                                 e->step, key, e->values[k], json_number_value(v));
                    found = 1;
                }
            cr_assert(found, "step %lld: no scalar %s", e->step, key);
        }
        cr_assert_eq(e->n_values, want, "step %lld: %d scalars for %d numbers", e->step,
                     e->n_values, want);
        n_scalars += want;
    }
    cr_assert_geq(n_val, 2, "the run should have validation lines");
    printf("tensorboard: %d events, %d scalars match metrics.jsonl (%d validation lines)\n", n,
           n_scalars, n_val);
    json_decref(lines);
}

Test(tensorboard, off_writes_no_event_file, .timeout = 120) {
    char dir[256], out[512], path[1024];
    make_temp_dir(dir, sizeof dir, "tboff");
    snprintf(out, sizeof out, "%s/run", dir);
    run_tiny(dir, out, 0);
    cr_assert_eq(event_files(out, path, sizeof path), 0, "train.tensorboard: false wrote %s",
                 path);
}

Test(tensorboard, tensorboards_reader_agrees, .timeout = 180) {
    char dir[256], out[512];
    make_temp_dir(dir, sizeof dir, "tbpy");
    snprintf(out, sizeof out, "%s/run", dir);
    run_tiny(dir, out, 1);
    const char *argv[] = {PYTHON, "tests/check_tensorboard.py", out, NULL};
    int rc = run_python(argv);
    if (rc == 77) {
        printf("SKIP tensorboard.tensorboards_reader_agrees: no .venv with tensorboard "
               "(make .venv/bin/python)\n");
        return;
    }
    cr_assert_eq(rc, 0, "tests/check_tensorboard.py %s failed (its output is above)", out);
}
