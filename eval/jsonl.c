/* eval/jsonl.c — the next object of a JSONL file (see jsonl.h). */
#include "eval/jsonl.h"

#include <errno.h>
#include <string.h>
#include <sys/types.h>

#include "util/util.h"

int jsonl_next_object(FILE *in, const char *path, char **buf, size_t *cap, long *lineno,
                      json_t **obj) {
    ssize_t len;
    *obj = NULL;
    while ((len = getline(buf, cap, in)) >= 0) {
        (*lineno)++;
        if (strspn(*buf, " \t\r\n") == (size_t)len) continue;
        json_error_t jerr;
        json_t *o = json_loadb(*buf, (size_t)len, 0, &jerr);
        if (!o)
            return err_set("%s:%ld: not valid JSON (%s at column %d); each line must be one "
                           "JSON object",
                           path, *lineno, jerr.text, jerr.column);
        if (!json_is_object(o)) {
            json_decref(o);
            return err_set("%s:%ld: not a JSON object (another JSON value); each line must be "
                           "one JSON object",
                           path, *lineno);
        }
        *obj = o;
        return 1;
    }
    if (ferror(in)) return err_set("%s: read failed: %s", path, strerror(errno));
    return 0;
}
