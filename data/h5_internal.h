/* data/h5_internal.h — what the HDF5 reader (h5data.c) and writer (h5write.c)
 * share: quiet HDF5 error handling, the innermost HDF5 error message, and the
 * names of the pref groups. Not part of the public interface. */
#ifndef RETORT_H5_INTERNAL_H
#define RETORT_H5_INTERNAL_H

#include <hdf5.h>
#include <stdint.h>

#include "data/h5data.h"

#define REBUILD_HINT "rebuild the file with `retort data build`"

/* Switches HDF5's own error printing off (once). */
void h5_quiet(void);
/* The most specific message on HDF5's error stack for the call that just
 * failed, also left in h5_why. Take it before any other HDF5 call: the next
 * call clears the stack. */
const char *h5_reason(void);
extern _Thread_local char h5_why[384];
/* The errno of the failed system call under that message (a full disk:
 * ENOSPC), or 0 when HDF5 failed for its own reasons. */
extern _Thread_local int h5_sys_errno;

/* What the streamed reader (h5stream.c) shares with the whole-file reader. */
typedef enum { COL_TOKENS, COL_INT64, COL_UINT8, COL_FLOAT64 } ColumnKind;
extern const char *const h5_kind_expect[]; /* "uint16 or uint32", ... per ColumnKind */
/* 1 when dtype t is one a column of `kind` may have on disk. */
int h5_dtype_ok(hid_t t, ColumnKind kind);
/* "uint16", "float32", "string(8)", ... for messages about a wrong dtype. */
void h5_dtype_name(hid_t t, char *buf, size_t cap);
/* Copies path into dst (cap bytes) and opens the file read-only (closing it
 * closes every object opened inside); -1 with the error set. */
hid_t h5_open_named(char *dst, size_t cap, const char *path);
/* The root attributes of an lm/sft/kd file into ds (schema, version,
 * vocab_size, eos_id, pad_id, tokenizer), checked; 0 or -1 (error set). */
int h5_read_attributes(Dataset *ds, hid_t file, const char *path);
/* A text attribute of npoints strings; 1 if absent, 0 on success, -1 error. */
int h5_attr_strings(hid_t file, const char *path, const char *name, char ***out, int *n_out);
/* Whether the file stores all n entries of dataset `name` (metadata only):
 * 0, or -1 with the error set naming file and dataset. */
int h5_check_stored(hid_t file, hid_t dset, hid_t type, hid_t space, const char *path,
                    const char *name, uint64_t n);
/* Frees a streamed dataset's reader (dataset_close calls it). */
void dataset_stream_close(Dataset *ds);
/* Streamed: the examples whose role id is `id`, by a chunked scan of the
 * role column (a new array into *items); 0 or -1 (error set). */
int dataset_stream_role_scan(const Dataset *ds, int id, int64_t **items, int64_t *count);
/* Streamed: how many examples of subset (count items) or of the range
 * [first, first + count) are longer than limit tokens, by chunked reads of
 * the offsets; -1 (error set) when a read fails. */
int64_t dataset_stream_count_longer(const Dataset *ds, const int64_t *subset, int64_t first,
                                    int64_t count, int64_t limit);

/* kd: the teacher_topk_ids / _logp pair as found (0 present, 1 absent; r x c
 * each), checked alike for loaded and streamed files; sets ds->topk. 0, 1
 * when neither is there, -1 with the error set. */
int topk_shapes_check(Dataset *ds, int a, int b, int64_t r1, int64_t c1, int64_t r2, int64_t c2);

extern const char *const pref_parts[3];  /* prompt, chosen, rejected */
extern const char *const pref_cols[6];   /* {part}/tokens, {part}/offsets */

#endif
