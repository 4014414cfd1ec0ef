/* Progress lines (util/progress.c) with a fake clock: what a terminal and a
 * log see, the throttling, unknown totals, quiet, and a failed command. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/progress.h"

static double fake_now;
static double fake_clock(void) { return fake_now; }

typedef struct {
    char *buf;
    size_t len;
    FILE *f;
} Sink;

static void sink_open(Sink *s) {
    memset(s, 0, sizeof *s);
    s->f = open_memstream(&s->buf, &s->len);
    cr_assert(s->f);
}
static const char *sink_text(Sink *s) {
    fflush(s->f);
    return s->buf;
}
static void sink_close(Sink *s) {
    fclose(s->f);
    free(s->buf);
}

Test(progress, plain_lines_every_interval_then_a_summary) {
    Sink s;
    sink_open(&s);
    fake_now = 100;
    Progress *p = progress_open_at("generate", "prompts", 200, s.f, PROGRESS_PLAIN, fake_clock, 10);
    for (int i = 0; i < 200; i++) {
        fake_now += 0.25; /* 4 prompts/s */
        progress_add(p, 1);
    }
    progress_close(p, 1);
    /* a line at 10 s (40 done), 20 s, 30 s, 40 s; none at 50 s (done); then the summary */
    cr_assert_str_eq(sink_text(&s),
                     "generate: 40/200 prompts (20%), 4.00 prompts/s, ETA 40 s\n"
                     "generate: 80/200 prompts (40%), 4.00 prompts/s, ETA 30 s\n"
                     "generate: 120/200 prompts (60%), 4.00 prompts/s, ETA 20 s\n"
                     "generate: 160/200 prompts (80%), 4.00 prompts/s, ETA 10 s\n"
                     "generate: 200/200 prompts in 50 s, 4.00 prompts/s\n");
    sink_close(&s);
}

Test(progress, tty_redraws_in_place_at_most_ten_times_a_second) {
    Sink s;
    sink_open(&s);
    fake_now = 0;
    Progress *p = progress_open_at("eval", "prompts", 3, s.f, PROGRESS_TTY, fake_clock, 10);
    fake_now = 0.05;
    progress_add(p, 1); /* too soon after the start: not drawn */
    fake_now = 1;
    progress_add(p, 1);
    fake_now = 1.05;
    progress_add(p, 0); /* too soon after the last draw */
    fake_now = 1.5;
    progress_add(p, 1);
    progress_close(p, 1);
    cr_assert_str_eq(sink_text(&s), "\reval: 2/3 prompts (66%), 2.00 prompts/s, ETA 0.5 s\033[K"
                                    "\reval: 3/3 prompts (100%), 2.00 prompts/s\033[K"
                                    "\reval: 3/3 prompts in 1.5 s, 2.00 prompts/s\033[K\n");
    sink_close(&s);
}

Test(progress, unknown_total_counts_without_eta) {
    Sink s;
    sink_open(&s);
    fake_now = 0;
    Progress *p = progress_open_at("data build", "documents", 0, s.f, PROGRESS_PLAIN, fake_clock, 1);
    fake_now = 2;
    progress_add(p, 3000);
    fake_now = 4;
    progress_add(p, 1000);
    progress_close(p, 1);
    cr_assert_str_eq(sink_text(&s), "data build: 3000 documents, 1500 documents/s\n"
                                    "data build: 4000 documents, 1000 documents/s\n"
                                    "data build: 4000 documents in 4.0 s, 1000 documents/s\n");
    sink_close(&s);
}

Test(progress, bytes_and_detail) {
    Sink s;
    sink_open(&s);
    fake_now = 0;
    Progress *p = progress_open_at("data build", "bytes", 10000000, s.f, PROGRESS_PLAIN, fake_clock, 5);
    fake_now = 5;
    progress_detail(p, "%d lines, %d documents", 1200, 1190);
    progress_add(p, 2500000);
    fake_now = 20;
    progress_detail(p, "%d lines, %d documents", 4800, 4770);
    progress_add(p, 7500000);
    progress_close(p, 1);
    cr_assert_str_eq(sink_text(&s),
                     "data build: 2.5 MB/10.0 MB (25%), 1200 lines, 1190 documents, 500.0 kB/s, ETA 15 s\n"
                     "data build: 10.0 MB/10.0 MB, 4800 lines, 4770 documents, in 20 s, 500.0 kB/s\n");
    sink_close(&s);
}

Test(progress, off_writes_nothing_and_counts) {
    Sink s;
    sink_open(&s);
    fake_now = 0;
    Progress *p = progress_open_at("pairs", "prompts", 5, s.f, PROGRESS_OFF, fake_clock, 0);
    for (int i = 0; i < 5; i++) {
        fake_now += 100;
        progress_add(p, 1);
    }
    cr_assert_eq(progress_done(p), 5);
    progress_close(p, 1);
    cr_assert_str_eq(sink_text(&s), "");
    sink_close(&s);
    /* quiet through the public constructor, and NULL tolerated everywhere */
    Progress *q = progress_open("pairs", "prompts", 5, 1);
    progress_add(q, 1);
    progress_close(q, 1);
    progress_add(NULL, 1);
    progress_close(NULL, 1);
    cr_assert_eq(progress_done(NULL), 0);
}

Test(progress, failed_command_ends_the_live_line_without_a_summary) {
    Sink s;
    sink_open(&s);
    fake_now = 0;
    Progress *p = progress_open_at("agent", "tasks", 10, s.f, PROGRESS_TTY, fake_clock, 10);
    fake_now = 1;
    progress_add(p, 4);
    progress_close(p, 0);
    cr_assert_str_eq(sink_text(&s), "\ragent: 4/10 tasks (40%), 4.00 tasks/s, ETA 1.5 s\033[K\n");
    sink_close(&s);
}

Test(progress, erase_clears_a_live_line_for_the_command_report) {
    Sink s;
    sink_open(&s);
    fake_now = 0;
    Progress *p = progress_open_at("generate", "prompts", 10, s.f, PROGRESS_TTY, fake_clock, 10);
    fake_now = 1;
    progress_add(p, 5);
    progress_erase(p);
    cr_assert_str_eq(sink_text(&s), "\rgenerate: 5/10 prompts (50%), 5.00 prompts/s, ETA 1.0 s\033[K\r\033[K");
    sink_close(&s);
    sink_open(&s);
    p = progress_open_at("generate", "prompts", 10, s.f, PROGRESS_PLAIN, fake_clock, 0.5);
    fake_now = 2;
    progress_add(p, 5);
    progress_erase(p); /* a log keeps its lines and gets no summary */
    cr_assert_str_eq(sink_text(&s), "generate: 5/10 prompts (50%), 5.00 prompts/s, ETA 1.0 s\n");
    sink_close(&s);
}

Test(progress, durations_for_people) {
    char d[32];
    progress_format_duration(4.25, d);
    cr_assert_str_eq(d, "4.2 s");
    progress_format_duration(59.4, d);
    cr_assert_str_eq(d, "59 s");
    progress_format_duration(185, d);
    cr_assert_str_eq(d, "3 min 05 s");
    progress_format_duration(7620, d);
    cr_assert_str_eq(d, "2 h 07 min");
    progress_format_duration(-1, d);
    cr_assert_str_eq(d, "?");
}

static char *read_redirected_stderr(void) {
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    return buf;
}

/* RETORT_PROGRESS=plain gives plain lines on standard error even from a
 * terminal; the summary starts with the counts (its rate depends on the clock). */
Test(progress, environment_plain_writes_the_summary_to_stderr, .init = cr_redirect_stderr) {
    setenv("RETORT_PROGRESS", "plain", 1);
    Progress *p = progress_open("x", "items", 2, 0);
    progress_add(p, 2);
    progress_close(p, 1);
    unsetenv("RETORT_PROGRESS");
    const char *got = read_redirected_stderr();
    cr_assert(!strncmp(got, "x: 2/2 items in ", 16), "got '%s'", got);
    cr_assert_eq(strchr(got, '\r'), NULL);
}

/* RETORT_PROGRESS=off silences a command that has no -q. */
Test(progress, environment_off_writes_nothing, .init = cr_redirect_stderr) {
    setenv("RETORT_PROGRESS", "off", 1);
    Progress *p = progress_open("x", "items", 1, 0);
    progress_add(p, 1);
    progress_close(p, 1);
    unsetenv("RETORT_PROGRESS");
    cr_assert_str_eq(read_redirected_stderr(), "");
}

Test(progress, count_lines_skips_blank_lines) {
    char path[] = "/tmp/retort_progress_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *text = "{\"a\": 1}\n\n  \t\n{\"a\": 2}\r\n{\"a\": 3}";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    cr_assert_eq(progress_count_lines(path), 3);
    unlink(path);
    cr_assert_eq(progress_count_lines(path), 0);   /* gone */
    cr_assert_eq(progress_count_lines("/dev/stdin"), 0); /* not a regular file */
}
