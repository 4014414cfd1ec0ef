/* eval/jsonl.h — reading the JSONL files the evaluation commands take (one
 * JSON object per line, blank lines allowed), with the file:line of every
 * error. */
#ifndef RETORT_EVAL_JSONL_H
#define RETORT_EVAL_JSONL_H

#include <jansson.h>
#include <stdio.h>

/* The next object of in (named path in messages): blank lines are skipped and
 * every line read is counted in *lineno; *buf and *cap are getline's buffer
 * (free *buf at the end). 1 with *obj set (the caller decrefs it), 0 at the
 * end of the file, -1 with the error set: "PATH:LINE: not valid JSON (...)",
 * "PATH:LINE: not a JSON object (...)" or a read failure. */
int jsonl_next_object(FILE *in, const char *path, char **buf, size_t *cap, long *lineno,
                      json_t **obj);

#endif
