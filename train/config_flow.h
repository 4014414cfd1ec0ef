/* train/config_flow.h — between train/config.c and train/config_flow.c: a
 * YAML node (a config file's mapping or list) as the canonical flow text the
 * structured keys (objective.task_weights, data.mix) are stored as. */
#ifndef RETORT_CONFIG_FLOW_H
#define RETORT_CONFIG_FLOW_H

#include <stddef.h>
#include <yaml.h>

/* The node as YAML flow text ("{a: 1, b: 2}", "[{path: x.h5, weight: 1}]"):
 * plain scalars where they need no quotes, double-quoted otherwise. -1 when
 * it does not fit in cap bytes (with the terminating NUL). */
int config_flow_text(yaml_document_t *doc, yaml_node_t *node, char *out, size_t cap);

#endif
