/* cli/cmd_eval.c — `retort eval`: generate a completion for every line of a
 * JSONL and score it against the line's reference, or score given
 * hypotheses without a model (eval/evaluate.h). */
#include <float.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/tokenizer.h"
#include "eval/data_nll.h"
#include "eval/evaluate.h"
#include "model/lora.h"
#include "model/model_io.h"
#include "util/util.h"

static void usage_eval(FILE *f) {
    fprintf(f,
            "usage: retort eval --model DIR --input FILE.jsonl [options]\n"
            "       retort eval --hypotheses OUT.jsonl [--input FILE.jsonl] [options]\n"
            "       retort eval --model DIR --data SPLIT.h5 [--seq-len T] [--batch N]\n\n"
            "Generates a completion for each line's prompt and scores it against the\n"
            "line's reference: corpus BLEU and chrF (as sacrebleu computes them), exact\n"
            "match, ROUGE-L, token F1, the reference's perplexity given the prompt, and\n"
            "with --samples N > 1 (sampling) the mean self-BLEU of each prompt's samples.\n"
            "With --answer SPEC also the accuracy of the answers the spec reads.\n\n"
            "options:\n"
            "      --model DIR           checkpoint (model.safetensors + config.json)\n"
            "      --adapter DIR         a LoRA adapter to apply on top of --model\n"
            "  -i, --input FILE          JSONL with prompt and reference fields\n"
            "      --prompt-field NAME   (default: prompt)\n"
            "      --reference-field N   (default: reference)\n"
            "      --tokenizer SPEC      (default: the model's own)\n"
            "  -n, --max-new-tokens N    (default 64, or half the model's context if less)\n"
            "  -t, --temperature X       0 = greedy (default 0)\n"
            "      --top-k K, --top-p P  sampling filters\n"
            "      --samples N           samples per prompt for self-BLEU (default 1)\n"
            "      --beams K             beam search, at most 64 (the best beam is scored)\n"
            "      --length-penalty X    beam length penalty (default 1)\n"
            "      --stop STR            end completions at STR (repeatable)\n"
            CLI_CONTEXT_HELP
            CLI_CHAT_HELP
            "      --seed S              sampling seed (default 1337)\n"
            "      --predictions FILE    write each line with its prediction (JSONL)\n"
            "      --metrics FILE        write the metrics as JSON\n"
            "      --answer SPEC         report accuracy: the answer read from each completion\n"
            "                            against the gold answer read the same way (or the\n"
            "                            stripped gold when the spec finds none in it). SPEC:\n"
            "                            whole (stripped text); regex:RE (PCRE2, the LAST match,\n"
            "                            its first capture group that took part, else the\n"
            "                            whole match); last-number (the last number, commas and\n"
            "                            + removed, 3.0 = 3); option[:A-E] (a choice letter:\n"
            "                            'answer is (B)', then '(B)', then a bare 'B', then\n"
            "                            'B)' / 'B.'; the last occurrence of the first rule that\n"
            "                            matches). Completions without an answer count wrong\n"
            "                            and are counted\n"
            "      --answer-field NAME   the gold answer's field, a string or a number\n"
            "                            (default: the reference field)\n"
            "\nscoring given outputs (no model; the generation options are unused):\n"
            "      --hypotheses FILE     JSONL of outputs: each line's --hypothesis-field, a\n"
            "                            string or an array whose first string is scored\n"
            "                            (generate's completions[0]: the first sample, best\n"
            "                            beam, or the greedy output with --candidates). With\n"
            "                            --input, line i is scored against --input's line i\n"
            "                            (both must have as many non-blank lines); without,\n"
            "                            FILE holds the reference field itself\n"
            "      --hypothesis-field N  (default: \"prediction\", else \"completions\")\n\n"
            "a model's loss on an HDF5 split (lm, sft, kd), without generating:\n"
            "      --data FILE.h5        report the mean NLL per target token and the perplexity:\n"
            "                            the lm token stream, or each sft/kd example, cut into\n"
            "                            windows of T+1 tokens at multiples of T (every token\n"
            "                            but a sequence's first predicted once, with at most T\n"
            "                            tokens of context); sft/kd count where loss_mask is 1\n"
            "      --seq-len T           the window (default: the model's context)\n"
            "      --batch N             windows per forward (default 8)\n\n"
            CLI_DEVICE_HELP
            "  -q, --quiet               no progress line (the metrics are still printed)\n"
            "  -h, --help                this help\n");
}

/* what: the model directory or the hypotheses file; on: the input (NULL when
 * the hypotheses hold the references). */
static void print_result(const EvalResult *r, const char *what, const char *on,
                         const EvalJob *job) {
    printf("eval: %s on %s (%lld lines, %.1f s)\n", what, on ? on : "its own references",
           (long long)r->lines, r->seconds);
    printf("  BLEU %.2f (BP %.3f, ratio %.3f)  chrF %.2f  exact match %.1f%%\n", r->bleu.score,
           r->bleu.bp, r->bleu.ratio, r->chrf, 100 * r->exact_match);
    printf("  ROUGE-L %.4f  token F1 %.4f", r->rouge_l, r->token_f1);
    if (!isnan(r->ppl))
        printf("  perplexity %.4f (%lld reference tokens)", r->ppl, (long long)r->ref_tokens);
    printf("\n");
    if (!isnan(r->self_bleu))
        printf("  self-BLEU %.2f over %d samples\n", r->self_bleu, job->gen.samples);
    if (!isnan(r->accuracy))
        printf("  accuracy %.1f%% (%lld of %lld; %lld without an answer; --answer %s)\n",
               100 * r->accuracy, (long long)llround(r->accuracy * (double)r->lines),
               (long long)r->lines, (long long)r->no_answer, answer_spec_text(job->answer));
}

/* eval --data: the model's NLL on an HDF5 split (eval/data_nll.h). */
static int eval_data(const char *model_dir, const char *adapter, const CliDevice *dev,
                     DataNllJob *dj, const char *metrics, int quiet) {
    char tok_name[256] = "";
    const Backend *be = cli_backend(dev);
    GPT *m = be ? model_load_hf(model_dir, be) : NULL;
    if (!m || (adapter && lora_load_peft(m, adapter) != 0) ||
        model_tokenizer_name(model_dir, tok_name, sizeof tok_name) != 0) {
        gpt_free(m);
        return cli_fail("eval");
    }
    gpt_set_train_mode(m, 0);
    dj->model_tokenizer = tok_name;
    dj->quiet = quiet;
    DataNllResult r;
    int rc = data_nll(m, dj, &r);
    gpt_free(m);
    if (rc != 0) return cli_fail("eval");
    printf("eval: %s on %s (%s, %lld sequences, %lld windows of at most %d tokens, %.1f s)\n",
           model_dir, dj->path, schema_name(r.schema), (long long)r.sequences,
           (long long)r.windows, r.T + 1, r.seconds);
    printf("  NLL %.6f per target token, perplexity %.4f (%lld target tokens)\n", r.nll, r.ppl,
           (long long)r.tokens);
    if (metrics && data_nll_write_json(&r, metrics) != 0) return cli_fail("eval");
    return 0;
}

int cmd_eval(int argc, char **argv) {
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},          {"input", required_argument, 0, 'i'},
        {"prompt-field", required_argument, 0, 'P'},   {"reference-field", required_argument, 0, 'R'},
        {"tokenizer", required_argument, 0, 'T'},      {"max-new-tokens", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 't'},    {"top-k", required_argument, 0, 'k'},
        {"top-p", required_argument, 0, 'p'},          {"samples", required_argument, 0, 'S'},
        {"beams", required_argument, 0, 'B'},          {"length-penalty", required_argument, 0, 'l'},
        {"stop", required_argument, 0, 'X'},           {"seed", required_argument, 0, 's'},
        {"predictions", required_argument, 0, 'o'},    {"metrics", required_argument, 0, 'M'},
        CLI_DEVICE_OPTIONS,                            {"adapter", required_argument, 0, 'A'},
        {"quiet", no_argument, 0, 'q'},                {"help", no_argument, 0, 'h'},
        CLI_CONTEXT_OPTIONS,                           CLI_CHAT_OPTIONS,
        {"answer", required_argument, 0, 'a'},         {"answer-field", required_argument, 0, 'f'},
        {"hypotheses", required_argument, 0, 'H'},     {"hypothesis-field", required_argument, 0, 'F'},
        {"data", required_argument, 0, 'D'},           {"seq-len", required_argument, 0, 'L'},
        {"batch", required_argument, 0, 'b'},
        {0, 0, 0, 0}};
    EvalJob job = {0};
    CliChat chat = {0};
    CliDevice dev = {0};
    job.gen.sample = (SampleOptions){64, 0.0, 0, 1.0, -1, NULL, NULL};
    job.gen.samples = 1;
    job.gen.length_penalty = 1.0;
    job.gen.seed = 1337;
    const char *model_dir = NULL, *tok_spec = NULL, *metrics = NULL, *adapter = NULL;
    const char *answer = NULL;
    DataNllJob dj = {0};
    int c, bad = 0, n_given = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:i:n:t:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model_dir = optarg; break;
        case 'i': job.input = optarg; break;
        case 'P': job.gen.prompt_field = optarg; break;
        case 'R': job.reference_field = optarg; break;
        case 'T': tok_spec = optarg; break;
        case 'n':
            bad = cli_int("--max-new-tokens", optarg, 1, INT_MAX / 2,
                          &job.gen.sample.max_new_tokens);
            n_given = 1;
            break;
        case 't':
            bad = cli_double("--temperature", optarg, 0, DBL_MAX, &job.gen.sample.temperature);
            break;
        case 'k': bad = cli_int("--top-k", optarg, 0, INT_MAX, &job.gen.sample.top_k); break;
        case 'p':
            bad = cli_double("--top-p", optarg, -DBL_MAX, DBL_MAX, &job.gen.sample.top_p);
            break;
        case 'S': bad = cli_int("--samples", optarg, 1, INT_MAX / 2, &job.gen.samples); break;
        case 'B': bad = cli_int("--beams", optarg, 0, INT_MAX, &job.gen.beams); break;
        case 'l':
            bad = cli_double("--length-penalty", optarg, -DBL_MAX, DBL_MAX,
                             &job.gen.length_penalty);
            break;
        case CLI_OPT_TRUNCATE:
            bad = truncate_prompt_from_name(optarg, &job.gen.truncate_prompt);
            break;
        case CLI_OPT_CLAMP: job.gen.clamp_new_tokens = 1; break;
        case 'X':
            if (job.gen.n_stop == GENERATE_MAX_STOPS || !optarg[0]) {
                fprintf(stderr, "retort eval: at most %d non-empty --stop strings\n",
                        GENERATE_MAX_STOPS);
                return 2;
            }
            job.gen.stop[job.gen.n_stop++] = optarg;
            break;
        case 's': job.gen.seed = (uint64_t)atol(optarg); break;
        case 'o': job.predictions = optarg; break;
        case 'M': metrics = optarg; break;
        case CLI_OPT_DEVICE: dev.device = optarg; break;
        case CLI_OPT_THREADS: dev.threads = optarg; break;
        case 'A': adapter = optarg; break;
        case 'q': job.quiet = 1; break;
        case 'a': answer = optarg; break;
        case 'f': job.answer_field = optarg; break;
        case 'H': job.hypotheses = optarg; break;
        case 'F': job.hypothesis_field = optarg; break;
        case 'D': dj.path = optarg; break;
        case 'L': bad = cli_int("--seq-len", optarg, 1, INT_MAX, &dj.T); break;
        case 'b': bad = cli_int("--batch", optarg, 1, 65536, &dj.batch); break;
        case CLI_OPT_CHAT: chat.on = 1; break;
        case CLI_OPT_CHAT_TEMPLATE: chat.path = optarg; break;
        case 'h': usage_eval(stdout); return 0;
        default: usage_eval(stderr); return 2;
        }
        if (bad) return cli_usage_fail("eval");
    }
    if (dj.path) {
        if (!model_dir || job.input || job.hypotheses || answer) {
            fprintf(stderr, "retort eval: --data scores a model (--model) on an HDF5 split; it "
                            "takes neither --input, --hypotheses nor --answer\n");
            return 2;
        }
        return eval_data(model_dir, adapter, &dev, &dj, metrics, job.quiet);
    }
    if ((dj.T || dj.batch) && !dj.path) {
        fprintf(stderr, "retort eval: --seq-len and --batch go with --data FILE.h5\n");
        return 2;
    }
    if (job.hypotheses && (model_dir || adapter)) {
        fprintf(stderr, "retort eval: --hypotheses scores given outputs without a model; drop "
                        "--model/--adapter, or drop --hypotheses to generate with the model\n");
        return 2;
    }
    if (!job.hypotheses && (!model_dir || !job.input)) {
        fprintf(stderr, "retort eval: --model and --input are required (or --hypotheses FILE "
                        "to score given outputs)\n");
        return 2;
    }
    if (job.hypothesis_field && !job.hypotheses) {
        fprintf(stderr, "retort eval: --hypothesis-field names a field of --hypotheses FILE; "
                        "give --hypotheses\n");
        return 2;
    }
    if (job.answer_field && !answer) {
        fprintf(stderr, "retort eval: --answer-field is the gold side of --answer SPEC; give "
                        "--answer\n");
        return 2;
    }
    AnswerSpec *spec = NULL;
    if (answer && !(spec = answer_spec_parse(answer))) return cli_usage_fail("eval");
    job.answer = spec;
    if (job.hypotheses) {
        EvalResult r;
        int rc = evaluate_hypotheses(&job, &r);
        if (rc == 0) {
            print_result(&r, job.hypotheses, job.input, &job);
            if (metrics) rc = eval_result_write_json(&r, metrics);
        }
        answer_spec_free(spec);
        return rc == 0 ? 0 : cli_fail("eval");
    }
    if (sample_options_check(&job.gen.sample) != 0 ||
        beam_options_check(job.gen.beams, job.gen.length_penalty) != 0) {
        answer_spec_free(spec);
        return cli_usage_fail("eval");
    }
    if (job.gen.beams > 0 && job.gen.samples > 1) {
        fprintf(stderr, "retort eval: --samples %d with --beams: eval scores the best beam, and "
                        "self-BLEU needs sampled completions; give one of the two\n",
                job.gen.samples);
        answer_spec_free(spec);
        return 2;
    }
    if (job.gen.samples > 1 && job.gen.sample.temperature <= 0)
        fprintf(stderr, "retort eval: note: --samples %d with greedy decoding gives identical "
                        "samples (self-BLEU 100); set --temperature\n",
                job.gen.samples);
    const Backend *be = cli_backend(&dev);
    GPT *m = be ? model_load_hf(model_dir, be) : NULL;
    Tokenizer *tok = NULL;
    if (!m || (adapter && lora_load_peft(m, adapter) != 0) ||
        !(tok = model_tokenizer_load(model_dir, tok_spec, gpt_config(m)->vocab_size))) {
        gpt_free(m);
        answer_spec_free(spec);
        return cli_fail("eval");
    }
    if (!n_given)
        job.gen.sample.max_new_tokens = cli_default_new_tokens(64, gpt_context_len(gpt_config(m)));
    gpt_set_train_mode(m, 0);
    ChatPrompt cp;
    if (cli_chat_open(&chat, model_dir, tok, &cp) != 0) {
        gpt_free(m);
        tokenizer_free(tok);
        answer_spec_free(spec);
        return cli_fail("eval");
    }
    if (cp.tmpl) job.gen.chat = &cp;
    job.gen.sample.eos_id = job.gen.chat ? cp.end_of_turn : tok->eos_id;
    job.gen.quiet = 1;
    EvalResult r;
    int rc = evaluate_jsonl(m, tok, &job, &r);
    chat_prompt_close(&cp);
    if (rc == 0) {
        print_result(&r, model_dir, job.input, &job);
        if (metrics) rc = eval_result_write_json(&r, metrics);
    }
    gpt_free(m);
    tokenizer_free(tok);
    answer_spec_free(spec);
    return rc == 0 ? 0 : cli_fail("eval");
}
