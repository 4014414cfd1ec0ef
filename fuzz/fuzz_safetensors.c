/* fuzz/fuzz_safetensors.c — model/safetensors.c on arbitrary files.
 *
 * The input is a whole .safetensors file: the 8-byte header length, the JSON
 * header (tensor table, __metadata__) and the data. What is checked beyond
 * "no crash, no leak": after safetensors_open succeeds every tensor's bytes
 * lie inside the mapping (all are read), every tensor is found by its name,
 * floating-point tensors convert to fp32, and writing the tensors back out and
 * reading that file gives the same table and the same bytes. */
#include "fuzz/fuzz.h"
#include "model/safetensors.h"

static uint64_t touch(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) h = h * 31 + b[i];
    return h;
}

/* Writes f's tensors and metadata to a new file and checks it reads back the
 * same. (The writer refuses an empty tensor name, which the format allows on
 * reading; such a file is not written back.) */
static void round_trip(const SafeTensorsFile *f) {
    int n = safetensors_count(f);
    for (int i = 0; i < n; i++)
        if (!safetensors_get(f, i)->name[0]) return;
    StTensor *ts = xcalloc(n ? (size_t)n : 1, sizeof *ts);
    for (int i = 0; i < n; i++) ts[i] = *safetensors_get(f, i);
    const char *meta[] = {"format", safetensors_meta(f, "format"), NULL};
    char path[600];
    fuzz_path(path, sizeof path, "again.safetensors");
    if (safetensors_write(path, ts, n, meta[1] ? meta : NULL) != 0) {
        /* the only input the writer may refuse is one the reader should have */
        FUZZ_CHECK(0, "a file that opened cannot be written back: %s", err_msg());
    }
    SafeTensorsFile *g = safetensors_open(path);
    FUZZ_CHECK(g, "a file written from an opened one does not open: %s", err_msg());
    FUZZ_CHECK(safetensors_count(g) == n, "%d tensors written, %d read", n, safetensors_count(g));
    for (int i = 0; i < n; i++) {
        const StTensor *a = &ts[i], *b = safetensors_find(g, a->name);
        FUZZ_CHECK(b, "tensor '%s' lost in the round trip", a->name);
        FUZZ_CHECK(b->dtype == a->dtype && b->ndim == a->ndim && b->nbytes == a->nbytes &&
                       !memcmp(b->shape, a->shape, (size_t)a->ndim * sizeof a->shape[0]) &&
                       !memcmp(b->data, a->data, a->nbytes),
                   "tensor '%s' changed in the round trip", a->name);
    }
    safetensors_close(g);
    free(ts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    fuzz_write(path, sizeof path, "model.safetensors", data, size);
    err_clear();
    SafeTensorsFile *f = safetensors_open(path);
    if (!f) {
        FUZZ_CHECK(strcmp(err_msg(), "unknown error") != 0, "refused without a message");
        return 0;
    }
    volatile uint64_t sink = 0;
    for (int i = 0; i < safetensors_count(f); i++) {
        const StTensor *t = safetensors_get(f, i);
        FUZZ_CHECK(safetensors_find(f, t->name) == t, "tensor '%s' not found by name", t->name);
        FUZZ_CHECK((uint64_t)st_numel(t) * st_dtype_size(t->dtype) == t->nbytes,
                   "tensor '%s': shape and size disagree", t->name);
        sink += touch(t->data, t->nbytes);
        size_t numel = (size_t)st_numel(t);
        float *dst = xmalloc((numel ? numel : 1) * sizeof *dst);
        int rc = safetensors_read_f32(f, t, dst, numel);
        int is_float = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 ||
                       t->dtype == ST_F64;
        FUZZ_CHECK((rc == 0) == is_float, "tensor '%s': read_f32 returned %d", t->name, rc);
        free(dst);
    }
    (void)safetensors_meta(f, "format");
    round_trip(f);
    safetensors_close(f);
    (void)sink;
    return 0;
}
