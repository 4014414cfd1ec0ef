/* train/tb.h — TensorBoard event files: the trainer's scalars as
 * events.out.tfevents.<unix time>.<hostname>, which `tensorboard --logdir`
 * reads without TensorFlow. A hand-written encoder of the few protobuf fields
 * an Event with scalar summaries needs, in TFRecord framing. */
#ifndef RETORT_TB_H
#define RETORT_TB_H

#include <stddef.h>
#include <stdint.h>

typedef struct TbWriter TbWriter;

/* Creates a new event file in dir and writes its file_version event
 * ("brain.Event:2"). NULL with error set (the path and why) on failure. */
TbWriter *tb_open(const char *dir);
/* The path of w's file. */
const char *tb_path(const TbWriter *w);
/* One Event at step holding every number of the JSON object `line` (a
 * metrics.jsonl line) but "step" as a scalar under its key; nulls and
 * non-numbers (booleans) are left out. 0, or -1 with error set. */
int tb_log_json_line(TbWriter *w, const char *line);
/* One Event at step with the n scalars tags[i] = values[i]. */
int tb_log_scalars(TbWriter *w, int64_t step, const char *const *tags, const float *values, int n);
void tb_flush(TbWriter *w);
void tb_close(TbWriter *w);

/* CRC-32C (Castagnoli) of data, and TFRecord's masked form of a CRC. */
uint32_t tb_crc32c(const void *data, size_t n);
uint32_t tb_masked_crc(uint32_t crc);

#endif
