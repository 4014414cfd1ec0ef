/* train/stages.h — multi-stage runs (GLPFT: global, then one copy per role).
 *
 * A stages file is YAML:
 *
 *   base: configs/glpft-base.yaml     # a run config every stage starts from
 *   out_dir: runs/glpft               # stage s writes out_dir/<s>/ (a complete run dir)
 *   stages:
 *     - name: global
 *       set: {data.train: agent/train.h5, optim.lr: 5.0e-5, train.epochs: 2}
 *     - name: planner
 *       init_from: global             # start from that stage's final checkpoint
 *       set: {data.role: planner, optim.lr: 1.0e-5, train.epochs: 2}
 *
 * `set` holds config overrides exactly as --set takes them (section.key:
 * value); `base` is relative to the stages file. Stages run in order; a stage
 * whose run dir already holds its final checkpoint is skipped, and with resume
 * the first unfinished stage continues from its newest checkpoint, so an
 * interrupted multi-stage run picks up at the stage and step where it stopped.
 * `retort stages --set KEY=VALUE --out-dir DIR` runs the same plan with other
 * common overrides (a seed) into another directory.
 */
#ifndef RETORT_STAGES_H
#define RETORT_STAGES_H

#define STAGES_MAX 32
#define STAGES_MAX_SETS 64

typedef struct {
    char name[64];
    char init_from[64];             /* "" = the base config's model.init */
    int n_sets;
    char sets[STAGES_MAX_SETS][1200];  /* "section.key=value" */
} Stage;

typedef struct {
    char path[1024];                /* the stages file */
    char base[1024];                /* the base run config, resolved against path */
    char out_dir[1024];
    int n_stages;
    Stage stages[STAGES_MAX];
    Stage common;                   /* overrides for every stage (`stages --set`),
                                     * applied after base and before each stage's own */
} StagesPlan;

/* Parses and checks a stages file (names unique and path-safe, init_from names
 * an earlier stage, every `set` key valid). -1 with the error set (file:line). */
int stages_load(StagesPlan *plan, const char *path);

/* Adds "section.key=value" to the overrides every stage gets (before its own
 * `set`, so a stage's own value wins). -1 with the error set when the key is
 * not a config key or the value does not parse. */
int stages_add_common_set(StagesPlan *plan, const char *kv);

/* Runs the plan (quiet: no per-step lines). -1 with the error set. */
int stages_run(const StagesPlan *plan, int resume, int quiet);

#endif
