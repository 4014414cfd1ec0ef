/* train/tb.c — TensorBoard event files written by hand (tb.h).
 *
 * A file is a sequence of TFRecords: uint64 length (little-endian), masked
 * CRC-32C of those 8 bytes, the data, masked CRC-32C of the data. Each record
 * is an Event protobuf:
 *   Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
 *             Summary summary = 5; }
 *   Summary { repeated Value value = 1; }
 *   Value   { string tag = 1; float simple_value = 2; }
 * so the encoder needs three wire types: varint (0), 64-bit (1), 32-bit (5)
 * and length-delimited (2). Nested messages are encoded inside out into
 * their own buffers, since a length prefix precedes its content. */
#include "train/tb.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

struct TbWriter {
    FILE *f;
    char path[4352];
};

/* ---- CRC-32C, reflected polynomial 0x82F63B78, table-driven ---- */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (c & 1 ? 0x82F63B78u : 0);
        crc_table[i] = c;
    }
}

uint32_t tb_crc32c(const void *data, size_t n) {
    if (!crc_table[1]) crc_init();
    const unsigned char *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t tb_masked_crc(uint32_t crc) {
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

/* ---- protobuf encoding into a growing buffer ---- */

typedef struct {
    unsigned char *p;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_varint(Buf *b, uint64_t v) {
    unsigned char c[10];
    int n = 0;
    do {
        c[n] = (unsigned char)(v & 0x7F);
        v >>= 7;
        if (v) c[n] |= 0x80;
        n++;
    } while (v);
    put(b, c, (size_t)n);
}

static void put_key(Buf *b, int field, int wire_type) {
    put_varint(b, (uint64_t)field << 3 | (uint64_t)wire_type);
}

static void put_le(Buf *b, uint64_t v, int bytes) {
    unsigned char c[8];
    for (int i = 0; i < bytes; i++) c[i] = (unsigned char)(v >> (8 * i));
    put(b, c, (size_t)bytes);
}

static void put_bytes(Buf *b, int field, const void *data, size_t n) {
    put_key(b, field, 2);
    put_varint(b, n);
    put(b, data, n);
}

static void put_double(Buf *b, int field, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    put_key(b, field, 1);
    put_le(b, u, 8);
}

static void put_float(Buf *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    put_key(b, field, 5);
    put_le(b, u, 4);
}

static double wall_time(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

/* One TFRecord holding the Event ev. */
static int write_record(TbWriter *w, const Buf *ev) {
    Buf rec = {0};
    put_le(&rec, ev->n, 8);
    put_le(&rec, tb_masked_crc(tb_crc32c(rec.p, 8)), 4);
    put(&rec, ev->p, ev->n);
    put_le(&rec, tb_masked_crc(tb_crc32c(ev->p, ev->n)), 4);
    size_t wrote = fwrite(rec.p, 1, rec.n, w->f);
    free(rec.p);
    if (wrote != rec.n) return err_set("cannot write %s: %s", w->path, strerror(errno));
    return 0;
}

/* ---- the writer ---- */

TbWriter *tb_open(const char *dir) {
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    TbWriter *w = xcalloc(1, sizeof *w);
    snprintf(w->path, sizeof w->path, "%s/events.out.tfevents.%lld.%s", dir,
             (long long)time(NULL), host);
    w->f = fopen(w->path, "wb");
    if (!w->f) {
        err_set("cannot create the TensorBoard event file %s: %s (set train.tensorboard: false "
                "to run without one)", w->path, strerror(errno));
        free(w);
        return NULL;
    }
    Buf ev = {0};
    put_double(&ev, 1, wall_time());
    put_key(&ev, 2, 0);
    put_varint(&ev, 0);
    put_bytes(&ev, 3, "brain.Event:2", 13);
    int rc = write_record(w, &ev);
    free(ev.p);
    if (rc != 0) {
        tb_close(w);
        return NULL;
    }
    return w;
}

const char *tb_path(const TbWriter *w) { return w->path; }

int tb_log_scalars(TbWriter *w, int64_t step, const char *const *tags, const float *values, int n) {
    Buf summary = {0}, value = {0}, ev = {0};
    for (int i = 0; i < n; i++) {
        value.n = 0;
        put_bytes(&value, 1, tags[i], strlen(tags[i]));
        put_float(&value, 2, values[i]);
        put_bytes(&summary, 1, value.p, value.n);
    }
    put_double(&ev, 1, wall_time());
    put_key(&ev, 2, 0);
    put_varint(&ev, (uint64_t)step);
    put_bytes(&ev, 5, summary.p, summary.n);
    int rc = write_record(w, &ev);
    free(summary.p);
    free(value.p);
    free(ev.p);
    return rc;
}

int tb_log_json_line(TbWriter *w, const char *line) {
    json_error_t jerr;
    json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &jerr);
    json_t *s = j ? json_object_get(j, "step") : NULL;
    if (!s || !json_is_integer(s)) {
        json_decref(j);
        return err_set("tensorboard: not a metrics line with a step: %s", line);
    }
    size_t cap = json_object_size(j), n = 0;
    const char **tags = xmalloc((cap ? cap : 1) * sizeof *tags);
    float *values = xmalloc((cap ? cap : 1) * sizeof *values);
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        if (!strcmp(key, "step") || !json_is_number(v)) continue;
        tags[n] = key;
        values[n++] = (float)json_number_value(v);
    }
    int rc = tb_log_scalars(w, json_integer_value(s), tags, values, (int)n);
    free(tags);
    free(values);
    json_decref(j);
    return rc;
}

void tb_flush(TbWriter *w) {
    if (w) fflush(w->f);
}

void tb_close(TbWriter *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    free(w);
}
