/* train/objectives/registry.c — objective.type -> the method. A new method is
 * one file under train/objectives/ that defines `const Objective
 * objective_<name>` and one entry in OBJECTIVES below. */
#include "train/objectives/objective.h"

#include <stdio.h>
#include <string.h>

/* X(name): each registered method, in the order --help and messages list them. */
#define OBJECTIVES(X) X(lm) X(kd) X(dpo) X(orpo)

#define DECLARE(name) extern const Objective objective_##name;
OBJECTIVES(DECLARE)
#undef DECLARE

#define ENTRY(name) &objective_##name,
static const Objective *const REGISTRY[] = {OBJECTIVES(ENTRY)};
#undef ENTRY
#define N_REGISTERED ((int)(sizeof REGISTRY / sizeof REGISTRY[0]))

const Objective *objective_at(int i) {
    return i >= 0 && i < N_REGISTERED ? REGISTRY[i] : NULL;
}

const Objective *objective_find(const char *type) {
    char known[256] = "";
    for (int i = 0; i < N_REGISTERED; i++) {
        if (!strcmp(REGISTRY[i]->name, type)) return REGISTRY[i];
        size_t n = strlen(known);
        snprintf(known + n, sizeof known - n, "%s%s", i ? ", " : "", REGISTRY[i]->name);
    }
    err_set("objective.type '%s' is not a training method; use one of %s", type, known);
    return NULL;
}

int objective_check_config(const Config *cfg) {
    const Objective *o = objective_find(cfg->objective.type);
    return o ? o->validate(cfg) : -1;
}
