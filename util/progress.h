/* util/progress.h — progress of a long command on standard error.
 *
 * A command that walks a known number of items (prompts, lines, pairs,
 * documents) reports how many are done, the rate and the time left:
 *
 *   generate: 37/200 prompts (18%), 4.1 prompts/s, ETA 40 s
 *
 * On a terminal the line is redrawn in place (carriage return, at most ten
 * times a second) and the last state stays on screen, ended by a newline. In a
 * log (standard error not a terminal) a plain line is written at most once
 * every RETORT_PROGRESS_SECONDS (default 10 s), and once at the end, so logs
 * stay short. A total of 0 means unknown: the line counts items and gives the
 * rate, with no percentage or ETA. Quiet (a command's -q) writes nothing.
 *
 * RETORT_PROGRESS=tty|plain|off forces a mode (tests and scripts that want
 * plain lines from a terminal, or none at all).
 *
 * The clock and the stream are injectable (progress_open_at) so the output is
 * testable without sleeping or depending on the machine's speed. */
#ifndef RETORT_PROGRESS_H
#define RETORT_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef enum { PROGRESS_OFF, PROGRESS_TTY, PROGRESS_PLAIN } ProgressMode;

typedef struct Progress Progress;

/* what: the command ("generate"); unit: the items, plural ("prompts");
 * total: how many (0: unknown); quiet: write nothing. Never NULL on success;
 * NULL only when out of memory, and every function accepts NULL. */
Progress *progress_open(const char *what, const char *unit, int64_t total, int quiet);
/* The same with an explicit stream, mode, clock (seconds) and plain-line
 * interval; clock NULL = now_seconds. For tests. */
Progress *progress_open_at(const char *what, const char *unit, int64_t total, FILE *out,
                           ProgressMode mode, double (*clock)(void), double interval_s);
/* Text written after the counts ("12000 lines, 11980 documents"), replaced at
 * each call; NULL or "" removes it. A unit of "bytes" is written as kB, MB, GB
 * (data build walks its input by bytes). */
void progress_detail(Progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* n more items are done (n may be 0: only refreshes the line). */
void progress_add(Progress *p, int64_t n);
/* The items done so far. */
int64_t progress_done(const Progress *p);
/* Writes the final line ("... 200/200 prompts in 48.8 s, 4.1 prompts/s") and
 * frees. ok = 0 (the command failed) writes no summary and ends a live line
 * with a newline, so its last state stays above the error. */
void progress_close(Progress *p, int ok);

/* Frees without a summary and erases a live line, for a command that prints
 * its own report when it succeeds. */
void progress_erase(Progress *p);

/* The lines of a text file that hold more than white space (a JSONL file's
 * records), for a progress total: 0 when the file cannot be read or is not a
 * regular file (standard input), which the line shows as an unknown total. */
int64_t progress_count_lines(const char *path);

/* "40 s", "3 min 05 s", "2 h 07 min": a duration for people. out holds 32. */
void progress_format_duration(double seconds, char out[32]);

#endif
