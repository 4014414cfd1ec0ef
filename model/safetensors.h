/* model/safetensors.h — read and write the safetensors format.
 *
 * Format: 8-byte little-endian header length, a JSON header mapping each tensor
 * name to {dtype, shape, data_offsets:[begin,end)} (plus optional
 * "__metadata__" of string values), then the raw little-endian data.
 * The reader maps the file and validates the header against the file size
 * (offsets in range, sizes = numel * dtype size, no overlap), so a truncated or
 * corrupted file is refused with a message instead of read out of bounds.
 */
#ifndef RETORT_SAFETENSORS_H
#define RETORT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { ST_F32 = 0, ST_F16, ST_BF16, ST_F64, ST_I32, ST_I64, ST_U8, ST_I8 } StDtype;

#define ST_MAX_DIMS 8

typedef struct {
    const char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;   /* writer: the source; reader: points into the mapping */
    size_t nbytes;      /* reader only */
} StTensor;

size_t st_dtype_size(StDtype d);
int64_t st_numel(const StTensor *t);

/* Writes atomically (path.tmp, fsync, rename). meta: NULL or a NULL-terminated
 * list of key, value, key, value, ... strings. -1 with error set on failure. */
int safetensors_write(const char *path, const StTensor *tensors, int n, const char *const *meta);

typedef struct SafeTensorsFile SafeTensorsFile;
/* NULL with error set on a missing, truncated or malformed file. */
SafeTensorsFile *safetensors_open(const char *path);
void safetensors_close(SafeTensorsFile *f);
int safetensors_count(const SafeTensorsFile *f);
const StTensor *safetensors_get(const SafeTensorsFile *f, int i);
const StTensor *safetensors_find(const SafeTensorsFile *f, const char *name);
const char *safetensors_meta(const SafeTensorsFile *f, const char *key); /* NULL if absent */
/* Copies a tensor into dst as fp32 (converting F16/BF16/F64), checking that it
 * holds exactly n elements. -1 with error set otherwise. */
int safetensors_read_f32(const SafeTensorsFile *f, const StTensor *t, float *dst, size_t n);

#endif
