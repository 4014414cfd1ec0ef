/* data/h5_internal.h — what the HDF5 reader (h5data.c) and writer (h5write.c)
 * share: quiet HDF5 error handling, the innermost HDF5 error message, and the
 * names of the pref groups. Not part of the public interface. */
#ifndef RETORT_H5_INTERNAL_H
#define RETORT_H5_INTERNAL_H

#include <hdf5.h>

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

extern const char *const pref_parts[3];  /* prompt, chosen, rejected */
extern const char *const pref_cols[6];   /* {part}/tokens, {part}/offsets */

#endif
