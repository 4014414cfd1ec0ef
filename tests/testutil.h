/* tests/testutil.h — helpers shared by the Criterion tests: random inputs,
 * relative errors, temporary directories, and skipping when ../shared is absent.
 * Tests run from the repository root (scripts/run_tests.sh does that). */
#ifndef RETORT_TESTUTIL_H
#define RETORT_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "util/util.h"

/* Uniform in [-scale, scale). */
static inline void fill_uniform(Rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((rng_uniform(r) * 2.0 - 1.0) * scale);
}

/* ||a - b|| / max(||b||, tiny) in double. */
static inline double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return sqrt(num) / (den > 1e-300 ? sqrt(den) : 1e-150);
}

static inline double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d) m = d;
    }
    return m;
}

/* Adds N(0, scale^2) noise to every parameter of a host copy of m's flat
 * buffer (gpt_copy_params_to_host), so biases and gains leave their trivial
 * init. The noise is drawn tensor by tensor over 16-aligned spans, the values
 * landing on padding discarded: the model does not depend on how the buffer
 * pads (wte's padded vocabulary rows must stay zero). */
static inline void perturb_params_host(const GPT *m, float *w, Rng *r, double scale) {
    for (int t = 0; t < gpt_num_tensors(m); t++) {
        const ParamInfo *p = gpt_tensor(m, t);
        for (size_t i = 0; i < ((p->numel + 15) & ~(size_t)15); i++) {
            float e = (float)(scale * rng_normal(r));
            if (i < p->numel) w[p->offset + i] += e;
        }
    }
}

/* Creates a fresh directory under /tmp and writes its path into buf. */
static inline void make_temp_dir(char *buf, size_t cap, const char *tag) {
    snprintf(buf, cap, "/tmp/retort-test-%s-XXXXXX", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        abort();
    }
}

/* Path of a file under ../shared/data, or NULL (with a visible message) when the
 * shared folder is absent so the caller can cr_skip_test(). */
static inline const char *shared_data_path(char *buf, size_t cap, const char *rel) {
    snprintf(buf, cap, "../shared/data/%s", rel);
    if (access(buf, R_OK) != 0) {
        fprintf(stderr, "SKIP: %s not found (../shared is absent)\n", buf);
        return NULL;
    }
    return buf;
}

#endif
