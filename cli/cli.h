/* cli/cli.h — the `retort` command line: every command's entry point, the one
 * error exit, and the --device / --threads options of the commands that load a
 * model.
 *
 * A command gets argv[0] = its own name ("generate"; "precompute-ref" for
 * `retort dpo precompute-ref` once cmd_dpo has stepped past "dpo"), parses its
 * options with getopt_long, prints its own --help, and returns the exit
 * status: 0 done, 1 an error from outside (reported by cli_fail), 2 a usage
 * error. The work itself lives on the floors below (train/, eval/, data/,
 * model/); nothing below cli/ declares or calls a cmd_*.
 */
#ifndef RETORT_CLI_H
#define RETORT_CLI_H

#include <getopt.h>

#include "data/chat_data.h"
#include "model/backend.h"

int cmd_train(int argc, char **argv);     /* cli/cmd_train.c: train from a YAML config */
int cmd_stages(int argc, char **argv);    /* cli/cmd_train.c: a multi-stage plan (GLPFT) */
int cmd_data(int argc, char **argv);      /* cli/cmd_data.c: build, inspect, validate */
int cmd_generate(int argc, char **argv);  /* cli/cmd_generate.c: sample; JSONL or kd out */
int cmd_eval(int argc, char **argv);      /* cli/cmd_eval.c: metrics over a JSONL */
int cmd_export(int argc, char **argv);    /* cli/cmd_export.c: merge a LoRA adapter */
int cmd_dpo(int argc, char **argv);       /* cli/cmd_dpo.c: precompute-ref */
int cmd_pairs(int argc, char **argv);     /* cli/cmd_pairs.c: preference pairs */
int cmd_explain(int argc, char **argv);   /* cli/cmd_explain.c: explanations, build */
int cmd_tokenizer(int argc, char **argv); /* cli/cmd_tokenizer.c: train, encode */
int cmd_agent(int argc, char **argv);     /* cli/cmd_agent.c: make-data, tool, the loop */
int cmd_plot(int argc, char **argv);      /* cli/cmd_plot.c: metrics.jsonl as an SVG */
int cmd_correct(int argc, char **argv);   /* cli/cmd_correct.c: LMCOR build, run */
int cmd_device(int argc, char **argv);    /* cli/cli.c: what CUDA this build sees */
int cmd_plan(int argc, char **argv);      /* cli/cmd_plan.c: per-rank memory and FLOPs of a run */

/* Prints "retort CMD: error: <err_msg()>" on stderr and returns 1, the exit
 * status of an error from outside the program. */
int cli_fail(const char *cmd);
/* The same for a bad option value; returns 2, the usage error status. */
int cli_usage_fail(const char *cmd);

/* Option values, strictly: the whole of text must be a number in [min, max]
 * ("--beams 1e6", "--top-k 5x", "--temperature nan" are refused, not read as
 * something else). 0, or -1 with the error naming the option, the value and
 * the range. */
int cli_int(const char *option, const char *text, long min, long max, int *out);
int cli_double(const char *option, const char *text, double min, double max, double *out);

/* ---- --device and --threads ----
 * Every command that loads a model takes both and turns them into a backend
 * with cli_backend, the way `retort train` does with train.device and
 * train.threads. In a command:
 *
 *   static const struct option opts[] = {..., CLI_DEVICE_OPTIONS, {0, 0, 0, 0}};
 *   CliDevice dev = {0};
 *   ...  case CLI_OPT_DEVICE: dev.device = optarg; break;
 *        case CLI_OPT_THREADS: dev.threads = optarg; break;
 *   const Backend *be = cli_backend(&dev);   after the options, before any file
 *   if (!be) return cli_fail("generate");    is read or written
 */
enum { CLI_OPT_DEVICE = 0x100, CLI_OPT_THREADS }; /* above every short option */

#define CLI_DEVICE_OPTIONS                                                                  \
    {"device", required_argument, 0, CLI_OPT_DEVICE},                                      \
        {"threads", required_argument, 0, CLI_OPT_THREADS}

/* the two lines of a command's --help, in its column layout */
#define CLI_HELP_DEVICE "      --device NAME         cpu or cuda (default cpu)\n"
#define CLI_HELP_THREADS "      --threads N           CPU threads (default 0 = all cores)\n"
#define CLI_DEVICE_HELP CLI_HELP_DEVICE CLI_HELP_THREADS

/* ---- a prompt against the model's context ----
 * generate, eval and pairs take --truncate-prompt left|right and
 * --clamp-new-tokens (eval/generate_io.h says what they do); in a command:
 *   ...  case CLI_OPT_TRUNCATE: if (truncate_prompt_from_name(optarg, &job.truncate_prompt)) ...
 *        case CLI_OPT_CLAMP: job.clamp_new_tokens = 1; break;
 * A command's default -n is its own number or half the model's context,
 * whichever is less (cli_default_new_tokens). */
enum { CLI_OPT_TRUNCATE = 0x110, CLI_OPT_CLAMP };

/* The default -n of a command whose own default is n: n, or half of the
 * model's n_positions when that is less (at least 1). */
int cli_default_new_tokens(int n, int n_positions);

#define CLI_CONTEXT_OPTIONS                                                                 \
    {"truncate-prompt", required_argument, 0, CLI_OPT_TRUNCATE},                           \
        {"clamp-new-tokens", no_argument, 0, CLI_OPT_CLAMP}

#define CLI_CONTEXT_HELP                                                                    \
    "      --truncate-prompt S   a prompt that leaves no room for -n new tokens is cut\n"     \
    "                            to fit: left drops its start, right its end (default:\n"    \
    "                            refuse it, naming its length and the context)\n"             \
    "      --clamp-new-tokens    let the context lower -n: a completion also ends when\n"    \
    "                            the context is full (default: refuse a prompt + -n\n"       \
    "                            longer than the context)\n"

/* ---- --chat ----
 * generate, eval, pairs and agent take --chat (the model directory's chat
 * template) and --chat-template PATH (another one; implies --chat): each
 * prompt is wrapped as a user turn with the generation prompt, and
 * completions end at the template's end-of-turn token (data/chat_data.h).
 *   ...  case CLI_OPT_CHAT: chat.on = 1; break;
 *        case CLI_OPT_CHAT_TEMPLATE: chat.path = optarg; break;
 *   after the tokenizer is loaded: cli_chat_open(&chat, model_dir, tok, &cp)  */
enum { CLI_OPT_CHAT = 0x120, CLI_OPT_CHAT_TEMPLATE };

#define CLI_CHAT_OPTIONS                                                                    \
    {"chat", no_argument, 0, CLI_OPT_CHAT},                                                \
        {"chat-template", required_argument, 0, CLI_OPT_CHAT_TEMPLATE}

#define CLI_CHAT_HELP                                                                       \
    "      --chat                wrap each prompt as a user turn with the model's chat\n"     \
    "                            template (its tokenizer_config.json or\n"                   \
    "                            chat_template.jinja) and stop at the template's\n"          \
    "                            end-of-turn token\n"                                        \
    "      --chat-template PATH  --chat with this template (a .jinja file, a\n"             \
    "                            tokenizer_config.json or a model directory)\n"

typedef struct {
    int on;            /* --chat */
    const char *path;  /* --chat-template, NULL = the model directory's */
} CliChat;

/* The chat prompt the options ask for into *cp: 0 with cp->tmpl NULL when
 * neither was given, 0 when loaded, -1 with the error set (no template in the
 * model directory, a template that does not load). */
int cli_chat_open(const CliChat *chat, const char *model_dir, const Tokenizer *tok,
                  ChatPrompt *cp);

typedef struct {
    const char *device;  /* --device as given, NULL = cpu */
    const char *threads; /* --threads as given, NULL = all cores */
} CliDevice;

/* Sets OpenMP's and OpenBLAS's thread count to --threads (0 or absent: their
 * default, all cores or OMP_NUM_THREADS) and returns the backend --device names (backend_by_name:
 * for cuda, the backend brought up on device 0). NULL with the error set when
 * --threads is not a whole number >= 0, the device is unknown (the choices
 * are listed), or it is not built in or not usable on this machine (the
 * backend says why). */
const Backend *cli_backend(const CliDevice *dev);

#endif
