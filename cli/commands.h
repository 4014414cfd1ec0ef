/* cli/commands.h — `retort` subcommands that live outside main.c (each
 * parses its own options, prints its own --help, and returns the exit code). */
#ifndef RETORT_COMMANDS_H
#define RETORT_COMMANDS_H

int cmd_eval(int argc, char **argv);    /* retort eval: metrics over a JSONL */
int cmd_export(int argc, char **argv);  /* retort export --merge-lora */
int cmd_dpo(int argc, char **argv);     /* retort dpo precompute-ref */

#endif
