/* fuzz/replay_main.c — the main a harness gets without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on every file of each directory (or file) named
 * on the command line, in name order, so `make test` replays the committed
 * corpora — seeds and fixed crashes' reproducers — with the normal compiler
 * and flags (and under ASan + UBSan with SANITIZE=1). A crash, an abort or a
 * sanitizer report ends the process non-zero; the file about to run is printed
 * first, so the one that failed is the last name on stderr. Prints
 * "replayed N inputs" on success. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/util.h"

/* The harness linked with this file (fuzz/fuzz.h declares it for harnesses;
 * not included here, since it defines things each harness owns). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs the harness on one file; -1 when it cannot be read. */
static int replay_file(const char *path) {
    size_t len;
    char *data = read_file(path, &len);
    if (!data) {
        fprintf(stderr, "replay: %s\n", err_msg());
        return -1;
    }
    fprintf(stderr, "replay: %s\n", path);
    /* libFuzzer hands over a buffer of exactly len bytes; copy into one so
     * ASan sees a read past the end */
    uint8_t *copy = xmalloc(len ? len : 1);
    memcpy(copy, data, len);
    free(data);
    LLVMFuzzerTestOneInput(copy, len);
    free(copy);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR|FILE...  (runs the fuzz harness on every file)\n",
                argv[0]);
        return 2;
    }
    long n = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) {
            fprintf(stderr, "replay: cannot open %s\n", argv[a]);
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[a]) != 0) return 1;
            n++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) {
            fprintf(stderr, "replay: cannot list %s\n", argv[a]);
            return 1;
        }
        char **names = NULL;
        size_t count = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            names = xrealloc(names, (count + 1) * sizeof *names);
            names[count++] = xstrdup(e->d_name);
        }
        closedir(d);
        qsort(names, count, sizeof *names, cmp_names);
        int rc = 0;
        for (size_t i = 0; i < count; i++) {
            char path[4096];
            if (rc == 0 && path_join(path, sizeof path, argv[a], names[i]) == 0 &&
                stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                rc = replay_file(path);
                n++;
            }
            free(names[i]);
        }
        free(names);
        if (rc != 0) return 1;
    }
    printf("replayed %ld inputs\n", n);
    return 0;
}
