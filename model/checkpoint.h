/* model/checkpoint.h — checkpoint directories and Hugging Face files.
 *
 * Layout of one save (ARCHITECTURE.md):
 *   RUN/step-00001200/ model.safetensors  config.json  optimizer.safetensors
 *                      trainer.json  DONE
 * A save is written into RUN/step-XXXXXXXX.tmp/, every file fsynced, DONE
 * written last, the directory renamed to its final name and RUN fsynced. A
 * directory without DONE is never loaded.
 */
#ifndef RETORT_CHECKPOINT_H
#define RETORT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model/hf_config.h" /* config.json (hf_config_read, hf_config_write) */
#include "model/model.h"

/* RUN/step-%08lld */
void ckpt_dir_name(char *buf, size_t cap, const char *run_dir, int64_t step);
/* Creates a fresh RUN/step-XXXXXXXX.tmp (removing a stale one) and writes its
 * path into tmp_dir. -1 with error set on failure. */
int ckpt_begin(const char *run_dir, int64_t step, char *tmp_dir, size_t cap);
/* Writes DONE, fsyncs the directory, renames it to its final name (replacing
 * an older save of the same step), fsyncs RUN. */
int ckpt_commit(const char *run_dir, const char *tmp_dir, int64_t step);
/* Removes a failed .tmp directory. */
void ckpt_abort(const char *tmp_dir);
/* Steps of complete checkpoints (with DONE) in RUN, newest first. Returns the
 * count (at most max), 0 when none or RUN is missing. */
int ckpt_list(const char *run_dir, int64_t *steps, int max);
/* Removes what interrupted saves left: the directories in RUN named exactly
 * step-XXXXXXXX.tmp (nothing else is touched), calling removed(path, ctx)
 * after each when removed is not NULL. Call it before a run writes into RUN,
 * never while another process may be saving there. The count removed, or -1
 * with the error set. */
int ckpt_remove_stale(const char *run_dir, void (*removed)(const char *dir, void *ctx),
                      void *ctx);
/* Deletes all but the newest `keep` complete checkpoints (keep <= 0: none). */
int ckpt_prune(const char *run_dir, int keep);


#endif
