/* model/safetensors.c — read and write the safetensors format (see safetensors.h).
 *
 * Writing streams the tensors straight from their sources through one buffered
 * stream into path.tmp, so a multi-gigabyte model never sits in memory twice
 * (safetensors_write_fill makes each tensor's bytes on demand into one
 * tensor-sized buffer instead: a model on a GPU, converted to bf16 on the
 * way); only after fflush + fsync does path.tmp replace path. The JSON header is padded
 * with spaces to a multiple of 8 bytes so the data (and every F32/F64/I64 tensor
 * we lay out) starts aligned in the mapping.
 *
 * Reading maps the file and checks the whole header against the file size before
 * anyone sees a tensor: after safetensors_open succeeds, every StTensor's
 * [data, data + nbytes) lies inside the mapping and no two tensors overlap.
 * Tensors are kept in file order (by begin offset); a name-sorted index answers
 * safetensors_find. Files written by others need not pad their header, so a
 * tensor's data pointer may be unaligned: safetensors_read_f32 copies with
 * memcpy and never dereferences it as float. A reader that is done with a
 * tensor hands its pages back (safetensors_release), so loading a large
 * model does not keep the whole file resident.
 *
 * fp32 -> bf16/fp16 round to nearest, ties to even, as torch's casts do:
 * tests/test_hf_files.c checks every half and bf16 value and every tie.
 */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

/* The reference implementation refuses headers above 100 MB; so do we, so that
 * a garbage length cannot make us parse (or allocate for) the whole disk. */
#define ST_MAX_HEADER_BYTES 100000000ULL

static const char *const dtype_names[] = {"F32", "F16", "BF16", "F64", "I32", "I64", "U8", "I8"};
static const size_t dtype_sizes[] = {4, 2, 2, 8, 4, 8, 1, 1};
#define ST_NUM_DTYPES ((int)(sizeof dtype_sizes / sizeof dtype_sizes[0]))

size_t st_dtype_size(StDtype d) {
    return (int)d >= 0 && (int)d < ST_NUM_DTYPES ? dtype_sizes[d] : 0;
}

int64_t st_numel(const StTensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static int dtype_from_name(const char *s) {
    for (int i = 0; i < ST_NUM_DTYPES; i++)
        if (strcmp(s, dtype_names[i]) == 0) return i;
    return -1;
}

/* ---------------------------------------------------------------- writing */

/* numel * dtype size, or -1 when the shape is invalid or the size overflows. */
static int64_t tensor_nbytes(const StTensor *t) {
    if (t->ndim < 0 || t->ndim > ST_MAX_DIMS || st_dtype_size(t->dtype) == 0) return -1;
    int64_t n = (int64_t)st_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] < 0 || __builtin_mul_overflow(n, t->shape[i], &n)) return -1;
    }
    return n;
}

/* Builds the JSON header text (unpadded). NULL with error set on bad input. */
static char *build_header(const char *path, const StTensor *tensors, int n,
                          const char *const *meta, int streamed) {
    json_t *root = json_object();
    if (meta && meta[0]) {
        json_t *m = json_object();
        for (int i = 0; meta[i]; i += 2) {
            if (!meta[i + 1]) {
                json_decref(m);
                json_decref(root);
                err_set("%s: metadata key '%s' has no value (the list is key, value, ..., NULL)",
                        path, meta[i]);
                return NULL;
            }
            json_object_set_new(m, meta[i], json_string(meta[i + 1]));
        }
        json_object_set_new(root, "__metadata__", m);
    }
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        const StTensor *t = &tensors[i];
        const char *why = NULL;
        int64_t nbytes = tensor_nbytes(t);
        if (!t->name || !t->name[0]) why = "has no name";
        else if (strcmp(t->name, "__metadata__") == 0) why = "uses the reserved name __metadata__";
        else if (json_object_get(root, t->name)) why = "appears twice";
        else if (nbytes < 0) why = "has an invalid dtype or shape";
        else if (nbytes > 0 && !t->data && !streamed) why = "has no data";
        if (why) {
            json_decref(root);
            err_set("%s: cannot write tensor %d ('%s'): it %s", path, i,
                    t->name ? t->name : "(null)", why);
            return NULL;
        }
        json_t *entry = json_object();
        json_object_set_new(entry, "dtype", json_string(dtype_names[t->dtype]));
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(entry, "shape", shape);
        json_object_set_new(entry, "data_offsets",
                            json_pack("[I, I]", (json_int_t)offset, (json_int_t)(offset + nbytes)));
        json_object_set_new(root, t->name, entry);
        offset += nbytes;
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) err_set("%s: cannot encode the safetensors header (invalid UTF-8 in a name?)", path);
    return text;
}

static int write_error(const char *path, const char *tmp, int e) {
    unlink(tmp);
    return err_set("cannot write %s: %s%s", path, strerror(e),
                   e == ENOSPC ? " (the disk is full: free some space or point the run "
                                 "directory at a larger disk, then retry)"
                   : e == EACCES || e == EROFS ? " (check that the directory exists and is writable)"
                                               : "");
}

uint64_t safetensors_data_bytes(const StTensor *tensors, int n) {
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        int64_t b = tensor_nbytes(&tensors[i]);
        if (b > 0) total += (uint64_t)b;
    }
    return total;
}

/* fill == NULL: the bytes come from each tensor's data pointer. */
static int write_impl(const char *path, const StTensor *tensors, int n, const char *const *meta,
                      StFill fill, void *ctx) {
    char *header = build_header(path, tensors, n, meta, fill != NULL);
    if (!header) return -1;
    size_t header_len = strlen(header);
    size_t padded_len = (header_len + 7) / 8 * 8;

    size_t tmp_len = strlen(path) + 5;
    char *tmp = xmalloc(tmp_len);
    snprintf(tmp, tmp_len, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        int e = errno;
        free(header);
        int rc = err_set("cannot create %s: %s%s", tmp, strerror(e),
                         e == ENOSPC ? " (the disk is full: free some space and retry)"
                                     : " (check that the directory exists and is writable)");
        free(tmp);
        return rc;
    }
    static const size_t stream_buffer = 1 << 20;
    setvbuf(fp, NULL, _IOFBF, stream_buffer);
    void *buf = NULL;
    if (fill) {
        size_t largest = 1;
        for (int i = 0; i < n; i++)
            if ((size_t)tensor_nbytes(&tensors[i]) > largest)
                largest = (size_t)tensor_nbytes(&tensors[i]);
        buf = xmalloc(largest);
    }

    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)((uint64_t)padded_len >> (8 * i));
    int ok = fwrite(len_bytes, 1, 8, fp) == 8 && fwrite(header, 1, header_len, fp) == header_len;
    for (size_t i = header_len; ok && i < padded_len; i++) ok = fputc(' ', fp) != EOF;
    free(header);
    int filled = 1; /* 0: fill failed, its error is set */
    for (int i = 0; ok && filled && i < n; i++) {
        size_t nbytes = (size_t)tensor_nbytes(&tensors[i]);
        if (nbytes == 0) continue;
        const void *src = tensors[i].data;
        if (fill) {
            filled = fill(ctx, i, buf) == 0;
            src = buf;
        }
        if (filled) ok = fwrite(src, 1, nbytes, fp) == nbytes;
    }
    free(buf);
    if (!filled) {
        fclose(fp);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    if (ok) ok = fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    int e = errno;
    if (fclose(fp) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        int rc = write_error(path, tmp, e);
        free(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        free(tmp);
        return err_set("cannot rename %s.tmp to %s: %s", path, path, strerror(e));
    }
    free(tmp);
    /* Make the rename itself durable. */
    char *dir_copy = xstrdup(path);
    int rc = fsync_dir(dirname(dir_copy));
    free(dir_copy);
    return rc;
}

int safetensors_write(const char *path, const StTensor *tensors, int n, const char *const *meta) {
    return write_impl(path, tensors, n, meta, NULL, NULL);
}

int safetensors_write_fill(const char *path, const StTensor *tensors, int n,
                           const char *const *meta, StFill fill, void *ctx) {
    return write_impl(path, tensors, n, meta, fill, ctx);
}

/* ---------------------------------------------------------------- reading */

typedef struct {
    char *key, *value;
} StMeta;

struct SafeTensorsFile {
    char *path;
    void *map;
    size_t map_len;
    StTensor *tensors;  /* file order (by begin offset) */
    char **names;       /* owned names, parallel to tensors */
    const StTensor **by_name; /* sorted by name, for safetensors_find */
    int n;
    StMeta *meta;
    int n_meta;
};

int safetensors_count(const SafeTensorsFile *f) { return f->n; }

const StTensor *safetensors_get(const SafeTensorsFile *f, int i) {
    return i >= 0 && i < f->n ? &f->tensors[i] : NULL;
}

const char *safetensors_meta(const SafeTensorsFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

const StTensor *safetensors_find(const SafeTensorsFile *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, f->by_name[mid]->name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

void safetensors_close(SafeTensorsFile *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    for (int i = 0; i < f->n; i++) free(f->names[i]);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->names);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->path);
    free(f);
}

static const uint8_t *data_base(const SafeTensorsFile *f, uint64_t header_len) {
    return (const uint8_t *)f->map + 8 + header_len;
}

static int parse_metadata(SafeTensorsFile *f, json_t *m) {
    if (!json_is_object(m))
        return err_set("%s: __metadata__ is not a JSON object of strings (corrupted header?)", f->path);
    f->meta = xcalloc(json_object_size(m), sizeof(StMeta));
    const char *key;
    json_t *value;
    json_object_foreach(m, key, value) {
        if (!json_is_string(value))
            return err_set("%s: __metadata__ value for '%s' is not a string "
                           "(the format allows only string metadata)", f->path, key);
        f->meta[f->n_meta].key = xstrdup(key);
        f->meta[f->n_meta].value = xstrdup(json_string_value(value));
        f->n_meta++;
    }
    return 0;
}

/* Checks one header entry and fills t (except data, which needs the base). */
static int parse_entry(const SafeTensorsFile *f, const char *name, json_t *e,
                       uint64_t data_size, StTensor *t, uint64_t *begin) {
    if (!json_is_object(e))
        return err_set("%s: header entry for tensor '%s' is not a JSON object", f->path, name);
    json_t *jd = json_object_get(e, "dtype");
    json_t *js = json_object_get(e, "shape");
    json_t *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd))
        return err_set("%s: tensor '%s' has no dtype string", f->path, name);
    int dtype = dtype_from_name(json_string_value(jd));
    if (dtype < 0)
        return err_set("%s: tensor '%s' has dtype '%s', which retort does not read "
                       "(known: F32, F16, BF16, F64, I32, I64, U8, I8)",
                       f->path, name, json_string_value(jd));
    t->dtype = (StDtype)dtype;
    if (!json_is_array(js))
        return err_set("%s: tensor '%s' has no shape array", f->path, name);
    if (json_array_size(js) > ST_MAX_DIMS)
        return err_set("%s: tensor '%s' has %zu dimensions; at most %d are supported",
                       f->path, name, json_array_size(js), ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    uint64_t nbytes = st_dtype_size(t->dtype);
    int64_t numel = 1; /* in st_numel's order, so st_numel never overflows on a tensor read */
    int overflow = 0;
    for (int d = 0; d < t->ndim; d++) {
        json_t *v = json_array_get(js, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return err_set("%s: tensor '%s' has shape entry %d that is not a non-negative integer",
                           f->path, name, d);
        t->shape[d] = json_integer_value(v);
        overflow |= __builtin_mul_overflow(nbytes, (uint64_t)t->shape[d], &nbytes);
        overflow |= __builtin_mul_overflow(numel, t->shape[d], &numel);
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1)))
        return err_set("%s: tensor '%s' has no data_offsets [begin, end] pair of integers",
                       f->path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t end = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || end < b)
        return err_set("%s: tensor '%s' has data_offsets [%lld, %lld]; need 0 <= begin <= end",
                       f->path, name, (long long)b, (long long)end);
    if ((uint64_t)end > data_size)
        return err_set("%s: tensor '%s' ends at byte %lld but the file has only %llu data bytes "
                       "(truncated file?)", f->path, name, (long long)end,
                       (unsigned long long)data_size);
    if (overflow)
        return err_set("%s: tensor '%s' has a shape whose size overflows 64 bits "
                       "(corrupted header?)", f->path, name);
    if (nbytes != (uint64_t)(end - b))
        return err_set("%s: tensor '%s' has %lld data bytes but its shape and dtype %s need %llu "
                       "(corrupted header?)", f->path, name, (long long)(end - b),
                       dtype_names[t->dtype], (unsigned long long)nbytes);
    t->nbytes = (size_t)nbytes;
    *begin = (uint64_t)b;
    return 0;
}

typedef struct {
    uint64_t begin;
    int index;
} OffsetKey;

static int cmp_offset(const void *a, const void *b) {
    const OffsetKey *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->index - y->index;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

/* Parses and validates the header; fills f->tensors in file order. */
static int parse_header(SafeTensorsFile *f, const char *text, uint64_t header_len, uint64_t data_size) {
    json_error_t jerr;
    json_t *root = json_loadb(text, (size_t)header_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return err_set("%s: the header is not valid JSON (%s at byte %d); not a safetensors file, "
                       "or corrupted", f->path, jerr.text, jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return err_set("%s: the header is not a JSON object; not a safetensors file", f->path);
    }
    size_t cap = json_object_size(root);
    StTensor *ts = xcalloc(cap, sizeof(StTensor));
    char **names = xcalloc(cap, sizeof(char *));
    OffsetKey *keys = xcalloc(cap, sizeof(OffsetKey));
    int n = 0, rc = 0;
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (strcmp(key, "__metadata__") == 0) {
            if ((rc = parse_metadata(f, value)) != 0) break;
            continue;
        }
        if ((rc = parse_entry(f, key, value, data_size, &ts[n], &keys[n].begin)) != 0) break;
        names[n] = xstrdup(key);
        keys[n].index = n;
        n++;
    }
    json_decref(root);

    /* File order, then no tensor may start before the previous one ends. */
    f->tensors = xcalloc(n ? (size_t)n : 1, sizeof(StTensor));
    f->names = xcalloc(n ? (size_t)n : 1, sizeof(char *));
    f->n = n;
    qsort(keys, (size_t)n, sizeof(OffsetKey), cmp_offset);
    const uint8_t *base = data_base(f, header_len);
    uint64_t prev_end = 0;
    int prev = -1;
    for (int i = 0; i < n; i++) {
        int src = keys[i].index;
        f->tensors[i] = ts[src];
        f->names[i] = names[src];
        f->tensors[i].name = names[src];
        f->tensors[i].data = base + keys[i].begin;
        if (rc == 0 && f->tensors[i].nbytes > 0) {
            if (prev >= 0 && keys[i].begin < prev_end)
                rc = err_set("%s: tensors '%s' and '%s' overlap (bytes %llu..%llu and from %llu); "
                             "corrupted header?", f->path, f->tensors[prev].name,
                             f->tensors[i].name,
                             (unsigned long long)(prev_end - f->tensors[prev].nbytes),
                             (unsigned long long)prev_end, (unsigned long long)keys[i].begin);
            prev_end = keys[i].begin + f->tensors[i].nbytes;
            prev = i;
        }
    }
    free(ts);
    free(names);
    free(keys);
    if (rc != 0) return rc;

    f->by_name = xmalloc((n ? (size_t)n : 1) * sizeof(StTensor *));
    for (int i = 0; i < n; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, (size_t)n, sizeof(StTensor *), cmp_name);
    return 0;
}

SafeTensorsFile *safetensors_open(const char *path) {
    SafeTensorsFile *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        err_set("cannot open %s: %s", path, strerror(errno));
        safetensors_close(f);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set("%s: not a regular file", path);
        close(fd);
        safetensors_close(f);
        return NULL;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) {
        err_set("%s: the file has %llu bytes, fewer than the 8-byte header length "
                "(empty or truncated file?)", path, (unsigned long long)size);
        close(fd);
        safetensors_close(f);
        return NULL;
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        err_set("cannot map %s: %s", path, strerror(errno));
        safetensors_close(f);
        return NULL;
    }
    f->map = map;
    f->map_len = (size_t)size;

    const uint8_t *p = map;
    uint64_t header_len = 0;
    for (int i = 0; i < 8; i++) header_len |= (uint64_t)p[i] << (8 * i);
    int rc;
    if (header_len > size - 8)
        rc = err_set("%s: the header claims %llu bytes but the file has only %llu after the "
                     "length (truncated file, or not a safetensors file?)", path,
                     (unsigned long long)header_len, (unsigned long long)(size - 8));
    else if (header_len >= ST_MAX_HEADER_BYTES)
        rc = err_set("%s: the header claims %llu bytes, more than the 100 MB limit "
                     "(not a safetensors file?)", path, (unsigned long long)header_len);
    else if (header_len < 2 || p[8] != '{')
        rc = err_set("%s: the header does not start with '{' (not a safetensors file?)", path);
    else
        rc = parse_header(f, (const char *)p + 8, header_len, size - 8 - header_len);
    if (rc != 0) {
        safetensors_close(f);
        return NULL;
    }
    return f;
}

/* ---------------------------------------------------------------- conversion */

static float f32_from_bits(uint32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

static uint32_t f32_bits(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}

/* bfloat16 is the upper half of an fp32. */
float st_bf16_to_f32(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }

uint16_t st_f32_to_bf16(float x) {
    uint32_t bits = f32_bits(x);
    if ((bits & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it one (quiet, sign kept) */
        return (uint16_t)((bits >> 16) | 0x0040u);
    /* add half an ulp of bf16, plus one for an odd result: ties go to even;
     * a carry into the exponent is the correct rounding, up to inf */
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

uint16_t st_f32_to_f16(float x) {
    uint32_t bits = f32_bits(x);
    uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    uint32_t ax = bits & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: quiet, with the top of its payload */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* 65520 and up round to inf (65504 is the largest half) */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) { /* a normal half, 2^-14 and up: rebias 127 -> 15, round 13 bits */
        uint32_t r = ax - 0x38000000u + 0xfffu + ((ax >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (ax < 0x33000000u) return sign; /* below 2^-25 (half the smallest subnormal): zero */
    /* a subnormal half, k * 2^-24: the 24-bit significand shifted right by
     * 126 - exponent (14..24 places), rounded to nearest even; k = 0x400 is
     * the smallest normal, which its bits already say */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e, k = m >> shift, rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (k & 1u))) k++;
    return (uint16_t)(sign | k);
}

/* IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    if (exponent == 0x1f) /* inf or nan (payload kept) */
        return f32_from_bits(sign | 0x7f800000u | (mantissa << 13));
    if (exponent != 0) /* normal: rebias 15 -> 127 */
        return f32_from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13));
    if (mantissa == 0) return f32_from_bits(sign);
    /* Subnormal, mantissa * 2^-24: shift the leading 1 into the implicit bit.
     * Every half subnormal is a normal float. */
    int shift = 0;
    while (!(mantissa & 0x400)) {
        mantissa <<= 1;
        shift++;
    }
    return f32_from_bits(sign | ((uint32_t)(113 - shift) << 23) | ((mantissa & 0x3ff) << 13));
}

int safetensors_read_f32_part(const SafeTensorsFile *f, const StTensor *t, size_t first,
                              float *dst, size_t n) {
    uint64_t numel = (uint64_t)st_numel(t);
    if (first > numel || n > numel - first)
        return err_set("%s: tensor '%s': elements %zu..%zu asked of %llu", f->path, t->name,
                       first, first + n, (unsigned long long)numel);
    const uint8_t *src = (const uint8_t *)t->data + first * st_dtype_size(t->dtype);
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, src, n * sizeof(float));
        return 0;
    case ST_F16:
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
            dst[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
        return 0;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double x;
            memcpy(&x, src + 8 * i, sizeof x);
            dst[i] = (float)x;
        }
        return 0;
    default:
        return err_set("%s: tensor '%s' has integer dtype %s; expected a floating-point tensor "
                       "(F32, F16, BF16 or F64)", f->path, t->name, dtype_names[t->dtype]);
    }
}

int safetensors_read_f32(const SafeTensorsFile *f, const StTensor *t, float *dst, size_t n) {
    int64_t numel = st_numel(t);
    if ((uint64_t)numel != (uint64_t)n)
        return err_set("%s: tensor '%s' has %lld elements but %zu were expected "
                       "(checkpoint from a different model configuration?)",
                       f->path, t->name, (long long)numel, n);
    return safetensors_read_f32_part(f, t, 0, dst, n);
}

void safetensors_release(const SafeTensorsFile *f, const StTensor *t) {
    if (!f->map || t->nbytes == 0) return;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return;
    /* the pages lying wholly inside the tensor; its neighbours' stay */
    uintptr_t base = (uintptr_t)f->map, begin = (uintptr_t)t->data, end = begin + t->nbytes;
    uintptr_t first = (begin - base + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    uintptr_t last = (end - base) / (uintptr_t)page * (uintptr_t)page;
    if (last > first) madvise((char *)f->map + first, last - first, MADV_DONTNEED);
}

const char *safetensors_path(const SafeTensorsFile *f) { return f->path; }
