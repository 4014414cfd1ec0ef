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

/* The same, with each tensor's bytes made on demand instead of read from its
 * data pointer (which may be NULL): fill(ctx, i, dst) writes tensor i's
 * numel * dtype-size bytes into dst, or returns -1 with the error set. One
 * buffer of the largest tensor's size is reused, so a model is never held in
 * memory a second time. */
typedef int (*StFill)(void *ctx, int i, void *dst);
int safetensors_write_fill(const char *path, const StTensor *tensors, int n,
                           const char *const *meta, StFill fill, void *ctx);

/* Bytes of tensor data a list of tensors takes (what a shard holds). */
uint64_t safetensors_data_bytes(const StTensor *tensors, int n);

/* fp32 to bfloat16 / IEEE half, rounding to nearest, ties to even (torch's
 * .to(torch.bfloat16) / .half()): overflow gives inf, NaN stays NaN. */
uint16_t st_f32_to_bf16(float x);
uint16_t st_f32_to_f16(float x);
float st_bf16_to_f32(uint16_t h);
float st_f16_to_f32(uint16_t h);

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
/* Elements first .. first+count-1 of a floating-point tensor as fp32 (so a
 * large tensor converts a slice at a time). -1 with error set for an integer
 * dtype or a range outside the tensor. */
int safetensors_read_f32_part(const SafeTensorsFile *f, const StTensor *t, size_t first,
                              float *dst, size_t count);
/* Tells the kernel the mapped pages of t are not needed any more, so loading
 * a model tensor by tensor keeps at most about one tensor of the file
 * resident (they are read from the file again if touched). */
void safetensors_release(const SafeTensorsFile *f, const StTensor *t);
/* The path the file was opened from. */
const char *safetensors_path(const SafeTensorsFile *f);

#endif
