/* tests/test_chat_data.c — chat data through a model's template, against the
 * references of tests/make_chat_data_fixtures.py (tests/fixtures/chat_data):
 *   - `data build --schema sft` of {"messages", "tools"} lines gives
 *     transformers' apply_chat_template ids and return_assistant_tokens_mask,
 *     for Qwen2.5's template (ChatML, tool calls and tool responses) and
 *     TinyLlama's (Zephyr), both from the template's {% generation %} blocks
 *     and, for the templates as the models ship them (no blocks), from the
 *     spans derived by rendering prefixes;
 *   - `data build --schema pref` of TRL's conversational pairs (explicit and
 *     implicit prompts, tools) gives TRL's DPOTrainer ids;
 *   - --chat wraps a prompt as the template does and stops generation at
 *     its end-of-turn token, as transformers' generate() with that token;
 *     eval --chat scores references after wrapped prompts, pairs --chat
 *     stores wrapped prompts and end-of-turn-terminated responses, agent
 *     --chat wraps each role's rendering;
 *   - what cannot be done is refused with the line and the reason.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "data/build.h"
#include "data/chat_data.h"
#include "data/h5data.h"
#include "data/tokenizer.h"
#include "eval/agent.h"
#include "tests/testutil.h"

#define FIX "tests/fixtures/chat_data"

static json_t *expected(const char *key) {
    json_error_t e;
    json_t *root = json_load_file(FIX "/expected.json", 0, &e);
    cr_assert_not_null(root, "%s (run tests/make_chat_data_fixtures.py)", e.text);
    json_t *v = json_incref(json_object_get(root, key));
    json_decref(root);
    cr_assert_not_null(v, "expected.json has no %s", key);
    return v;
}

static void ints_equal(const json_t *want, const uint32_t *got, int64_t n, const char *what,
                       size_t line) {
    cr_assert_eq((int64_t)json_array_size(want), n, "line %zu %s: %lld ids, the reference has %zu",
                 line, what, (long long)n, json_array_size(want));
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq((int64_t)got[i], json_integer_value(json_array_get(want, (size_t)i)),
                     "line %zu %s[%lld]: %u, the reference has %lld", line, what, (long long)i,
                     got[i], (long long)json_integer_value(json_array_get(want, (size_t)i)));
}

static int build(const char *input, const char *out, Schema schema, const char *tokenizer,
                 const char *chat_template, BuildStats *st) {
    BuildOptions o = {.input = input, .output = out, .schema = schema, .tokenizer = tokenizer,
                      .chat_template = chat_template, .quiet = 1};
    return data_build_stats(&o, st);
}

/* The sft file at out holds, example by example, the reference's ids and
 * assistant masks. */
static void expect_sft(const char *out, const char *key) {
    json_t *want = expected(key);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, out), 0, "%s", err_msg());
    cr_assert_eq(ds.n_docs, (int64_t)json_array_size(want));
    for (size_t i = 0; i < json_array_size(want); i++) {
        const json_t *w = json_array_get(want, i);
        int64_t s = ds.offsets[i], n = ds.offsets[i + 1] - s;
        ints_equal(json_object_get(w, "input_ids"), ds.tokens + s, n, "input_ids", i + 1);
        const json_t *mask = json_object_get(w, "assistant_masks");
        for (int64_t k = 0; k < n; k++)
            cr_assert_eq((int64_t)ds.loss_mask[s + k],
                         json_integer_value(json_array_get(mask, (size_t)k)),
                         "line %zu token %lld: loss_mask %d, transformers' assistant mask %lld",
                         i + 1, (long long)k, ds.loss_mask[s + k],
                         (long long)json_integer_value(json_array_get(mask, (size_t)k)));
    }
    dataset_close(&ds);
    json_decref(want);
}

static void sft_case(const char *family, const char *template_path) {
    char dir[256], in[512], out[512], tok[512];
    make_temp_dir(dir, sizeof dir, "chat-data");
    snprintf(in, sizeof in, FIX "/sft_%s.jsonl", family);
    snprintf(out, sizeof out, "%s/sft.h5", dir);
    snprintf(tok, sizeof tok, FIX "/%s", family);
    BuildStats st;
    cr_assert_eq(build(in, out, SCHEMA_SFT, tok, template_path, &st), 0, "%s", err_msg());
    char key[64];
    snprintf(key, sizeof key, "sft_%s", family);
    expect_sft(out, key);
    rm_rf(dir);
}

/* The templates as the models ship them: no {% generation %}, spans derived. */
Test(chat_data, sft_qwen_derived_spans_are_transformers_generation_masks) {
    sft_case("qwen", NULL);
}

Test(chat_data, sft_zephyr_derived_spans_are_transformers_generation_masks) {
    sft_case("zephyr", NULL);
}

/* The same conversations with the {% generation %} templates. */
Test(chat_data, sft_generation_blocks_are_transformers_masks) {
    sft_case("qwen", FIX "/qwen/generation.jinja");
    sft_case("zephyr", FIX "/zephyr/generation.jinja");
}

static void pref_case(const char *input, const char *key) {
    char dir[256], out[512];
    make_temp_dir(dir, sizeof dir, "chat-data");
    snprintf(out, sizeof out, "%s/pairs.h5", dir);
    BuildStats st;
    cr_assert_eq(build(input, out, SCHEMA_PREF, FIX "/qwen", NULL, &st), 0, "%s", err_msg());
    json_t *want = expected(key);
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, out), 0, "%s", err_msg());
    cr_assert_str_eq(pd.boundary, "joint");
    cr_assert_eq(pd.n_pairs, (int64_t)json_array_size(want));
    static const char *const names[3] = {"prompt_ids", "chosen_ids", "rejected_ids"};
    const PrefPart *parts[3] = {&pd.prompt, &pd.chosen, &pd.rejected};
    for (size_t i = 0; i < json_array_size(want); i++)
        for (int k = 0; k < 3; k++) {
            int64_t s = parts[k]->offsets[i], n = parts[k]->offsets[i + 1] - s;
            ints_equal(json_object_get(json_array_get(want, i), names[k]), parts[k]->tokens + s,
                       n, names[k], i + 1);
        }
    pref_dataset_close(&pd);
    json_decref(want);
    rm_rf(dir);
}

Test(chat_data, conversational_pairs_are_dpotrainer_ids) {
    pref_case(FIX "/pairs_qwen.jsonl", "pairs_qwen");
    pref_case(FIX "/pairs_implicit.jsonl", "pairs_implicit");
}

/* --chat: the wrapped prompt is apply_chat_template(add_generation_prompt)'s
 * ids, the end-of-turn token is the template's (<|im_end|>, </s>). */
Test(chat_data, chat_prompt_wraps_and_finds_the_end_of_turn) {
    json_t *gens = expected("generate"), *eot = expected("end_of_turn");
    Tokenizer *tok = tokenizer_load(FIX "/qwen");
    cr_assert_not_null(tok, "%s", err_msg());
    ChatPrompt cp;
    cr_assert_eq(chat_prompt_open(&cp, FIX "/qwen", tok), 0, "%s", err_msg());
    cr_assert_eq(cp.end_of_turn, json_integer_value(json_object_get(eot, "qwen")));
    for (size_t i = 0; i < json_array_size(gens); i++) {
        const json_t *g = json_array_get(gens, i);
        char *text = chat_prompt_wrap(&cp, json_string_value(json_object_get(g, "prompt")));
        cr_assert_not_null(text, "%s", err_msg());
        uint32_t *ids = NULL;
        int64_t cap = 0, n = tok->encode(tok, text, strlen(text), &ids, &cap, 0);
        ints_equal(json_object_get(g, "prompt_ids"), ids, n, "prompt_ids", i + 1);
        free(ids);
        free(text);
    }
    chat_prompt_close(&cp);
    cr_assert_eq(chat_prompt_open(&cp, FIX "/zephyr", tok), 0, "%s", err_msg());
    cr_assert_eq(cp.end_of_turn, json_integer_value(json_object_get(eot, "zephyr")));
    chat_prompt_close(&cp);
    tokenizer_free(tok);
    json_decref(gens);
    json_decref(eot);
}

static const char *bin(void) {
    return getenv("RETORT_BIN") ? getenv("RETORT_BIN") : "./retort";
}

/* retort generate --chat: greedy completions equal transformers' generate()
 * stopping at <|im_end|> (the text before it). */
Test(chat_data, generate_chat_equals_transformers, .timeout = 60) {
    json_t *gens = expected("generate");
    char dir[256], in[512], out[512], cmd[2048];
    make_temp_dir(dir, sizeof dir, "chat-data");
    snprintf(in, sizeof in, "%s/prompts.jsonl", dir);
    snprintf(out, sizeof out, "%s/out.jsonl", dir);
    FILE *f = fopen(in, "w");
    for (size_t i = 0; i < json_array_size(gens); i++) {
        json_t *line = json_pack("{s:O}", "prompt", json_object_get(json_array_get(gens, i), "prompt"));
        char *s = json_dumps(line, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        free(s);
        json_decref(line);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s generate --model " FIX "/model --input %s --out %s --chat --temperature 0 "
             "--max-new-tokens 12 --threads 1 > %s/log 2>&1",
             bin(), in, out, dir);
    int rc = system(cmd);
    if (rc != 0) {
        snprintf(cmd, sizeof cmd, "cat %s/log >&2", dir);
        cr_assert_eq(system(cmd), 0);
    }
    cr_assert_eq(rc, 0, "retort generate --chat failed");
    f = fopen(out, "r");
    cr_assert_not_null(f);
    json_error_t e;
    for (size_t i = 0; i < json_array_size(gens); i++) {
        json_t *line = json_loadf(f, JSON_DISABLE_EOF_CHECK, &e);
        cr_assert_not_null(line, "%s line %zu: %s", out, i + 1, e.text);
        const char *got = json_string_value(json_array_get(json_object_get(line, "completions"), 0));
        const char *want = json_string_value(json_object_get(json_array_get(gens, i), "text"));
        cr_assert_str_eq(got, want, "prompt %zu: retort %s, transformers %s", i + 1, got, want);
        json_decref(line);
    }
    fclose(f);
    json_decref(gens);
    rm_rf(dir);
}

/* A template that renders a shorter conversation as no prefix of the whole
 * one cannot have its spans derived: refused with the line and the turn. A
 * malformed line is named too. */
Test(chat_data, underivable_spans_and_bad_lines_are_refused) {
    char dir[256], tpl[512], in[512], out[512];
    make_temp_dir(dir, sizeof dir, "chat-data");
    snprintf(tpl, sizeof tpl, "%s/last_only.jinja", dir);
    snprintf(in, sizeof in, "%s/in.jsonl", dir);
    snprintf(out, sizeof out, "%s/out.h5", dir);
    write_text(tpl, "{% for m in messages %}{% if loop.last %}{{ m.role + ': ' + m.content }}"
                    "{% endif %}{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}");
    write_text(in, "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
                   "\"assistant\", \"content\": \"yo\"}, {\"role\": \"user\", \"content\": "
                   "\"again\"}]}\n");
    BuildStats st;
    cr_assert_neq(build(in, out, SCHEMA_SFT, FIX "/qwen", tpl, &st), 0);
    assert_contains(err_msg(), "in.jsonl:1");
    assert_contains(err_msg(), "message 1");
    assert_contains(err_msg(), "generation");
    write_text(in, "{\"messages\": \"hello\"}\n");
    cr_assert_neq(build(in, out, SCHEMA_SFT, FIX "/qwen", NULL, &st), 0);
    assert_contains(err_msg(), "in.jsonl:1");
    assert_contains(err_msg(), "messages");
    write_text(in, "{\"prompt\": [{\"role\": \"user\", \"content\": \"hi\"}], \"chosen\": "
                   "[{\"role\": \"assistant\", \"content\": \"a\"}], \"rejected\": [{\"role\": "
                   "\"assistant\", \"content\": \"b\"}]}\n");
    cr_assert_neq(build(in, out, SCHEMA_PREF, FIX "/qwen/tokenizer.json", "plain", &st), 0);
    assert_contains(err_msg(), "chat template");
    rm_rf(dir);
}

/* retort eval --chat: predictions as generate --chat makes them, and the
 * references' perplexity given the wrapped prompts, each reference ending
 * with <|im_end|> (transformers' log-probs). */
Test(chat_data, eval_chat_scores_wrapped_prompts, .timeout = 60) {
    json_t *ev = expected("eval");
    char dir[256], in[512], metrics[512], cmd[2048];
    make_temp_dir(dir, sizeof dir, "chat-data");
    snprintf(in, sizeof in, "%s/eval.jsonl", dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.json", dir);
    FILE *f = fopen(in, "w");
    const json_t *prompts = json_object_get(ev, "prompts"), *refs = json_object_get(ev, "references");
    for (size_t i = 0; i < json_array_size(prompts); i++) {
        json_t *line = json_pack("{s:O, s:O}", "prompt", json_array_get(prompts, i), "reference",
                                 json_array_get(refs, i));
        char *s = json_dumps(line, JSON_COMPACT);
        fprintf(f, "%s\n", s);
        free(s);
        json_decref(line);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s eval --model " FIX "/model --input %s --chat --max-new-tokens 12 --threads 1 "
             "--metrics %s > %s/log 2>&1",
             bin(), in, metrics, dir);
    cr_assert_eq(system(cmd), 0, "retort eval --chat failed (see %s/log)", dir);
    json_error_t e;
    json_t *m = json_load_file(metrics, 0, &e);
    cr_assert_not_null(m, "%s", e.text);
    int64_t tokens = json_integer_value(json_object_get(ev, "ref_tokens"));
    double want = exp(-json_number_value(json_object_get(ev, "ref_logp_sum")) / (double)tokens);
    cr_assert_eq(json_integer_value(json_object_get(m, "ref_tokens")), tokens);
    double got = json_number_value(json_object_get(m, "ppl"));
    cr_assert(fabs(got - want) <= 1e-4 * want, "perplexity %.9g, transformers %.9g", got, want);
    json_decref(m);
    json_decref(ev);
    rm_rf(dir);
}

/* retort pairs --chat: the pref file's prompt is the wrapped prompt's ids and
 * each response ends with the end-of-turn token, as the model ended it. */
Test(chat_data, pairs_chat_stores_wrapped_prompts, .timeout = 60) {
    json_t *gens = expected("generate"), *eot = expected("end_of_turn");
    const json_t *g = json_array_get(gens, 0);
    char dir[256], in[512], scores[512], out[512], cmd[2048];
    make_temp_dir(dir, sizeof dir, "chat-data");
    snprintf(in, sizeof in, "%s/gen.jsonl", dir);
    snprintf(scores, sizeof scores, "%s/scores.jsonl", dir);
    snprintf(out, sizeof out, "%s/pairs.h5", dir);
    json_t *line = json_pack("{s:O, s:[s, s]}", "prompt", json_object_get(g, "prompt"),
                             "completions", "Off the bow.", "Ahab, sir.");
    char *s = json_dumps(line, JSON_COMPACT);
    write_text(in, s);
    free(s);
    json_decref(line);
    write_text(scores, "{\"scores\": [1, 0]}\n");
    snprintf(cmd, sizeof cmd,
             "%s pairs --read-completions --input %s --scorer external --scores %s --out %s "
             "--tokenizer " FIX "/qwen --chat-template " FIX "/qwen > %s/log 2>&1",
             bin(), in, scores, out, dir);
    cr_assert_eq(system(cmd), 0, "retort pairs --chat failed (see %s/log)", dir);
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, out), 0, "%s", err_msg());
    cr_assert_eq(pd.n_pairs, 1);
    ints_equal(json_object_get(g, "prompt_ids"), pd.prompt.tokens, pd.prompt.offsets[1],
               "prompt_ids", 1);
    uint32_t im_end = (uint32_t)json_integer_value(json_object_get(eot, "qwen"));
    cr_assert_eq(pd.chosen.tokens[pd.chosen.offsets[1] - 1], im_end);
    cr_assert_eq(pd.rejected.tokens[pd.rejected.offsets[1] - 1], im_end);
    /* the chosen response is the text the model generated, then <|im_end|> */
    ints_equal(json_object_get(g, "new_ids"), pd.chosen.tokens, pd.chosen.offsets[1],
               "chosen", 1);
    pref_dataset_close(&pd);
    json_decref(gens);
    json_decref(eot);
    rm_rf(dir);
}

/* retort agent --chat: a role's prompt is the α-UMi rendering up to its
 * header, wrapped as a user turn (transformers' ids). */
Test(chat_data, agent_chat_prompt_is_the_wrapped_rendering) {
    json_t *ag = expected("agent");
    Tokenizer *tok = tokenizer_load(FIX "/qwen");
    cr_assert_not_null(tok, "%s", err_msg());
    ChatPrompt cp;
    cr_assert_eq(chat_prompt_open(&cp, FIX "/qwen", tok), 0, "%s", err_msg());
    Agent a = {0};
    a.tok = tok;
    a.chat = &cp;
    json_t *msgs = json_pack("[{s:s, s:O}, {s:s, s:s}]", "role", "user", "content",
                             json_object_get(ag, "query"), "role", "planner", "content",
                             "Next: caller");
    uint32_t *ids = NULL;
    int64_t cap = 0, n = agent_prompt_ids(&a, msgs, 1, &ids, &cap);
    cr_assert(n > 0, "%s", err_msg());
    ints_equal(json_object_get(ag, "prompt_ids"), ids, n, "prompt_ids", 1);
    free(ids);
    json_decref(msgs);
    chat_prompt_close(&cp);
    tokenizer_free(tok);
    json_decref(ag);
}

/* transformers writes model_max_length 1000000000000000019884624838656 (an
 * integer beyond 64 bits) into many tokenizer_config.json files: the file
 * still gives its tokens and its template. */
Test(chat_data, tokenizer_config_with_a_huge_model_max_length_loads) {
    char dir[256], path[512], cmd[1024];
    make_temp_dir(dir, sizeof dir, "chat-data");
    snprintf(cmd, sizeof cmd, "cp " FIX "/qwen/tokenizer.json %s/", dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    write_text(path, "{\"eos_token\": \"<|im_end|>\", \"model_max_length\": "
                     "1000000000000000019884624838656, \"chat_template\": "
                     "\"{{ messages[0].content }}<|im_end|>\"}");
    cr_assert_eq(chat_template_in_dir(dir), 1);
    Tokenizer *tok = tokenizer_load(dir);
    cr_assert_not_null(tok, "%s", err_msg());
    ChatPrompt cp;
    cr_assert_eq(chat_prompt_open(&cp, dir, tok), 0, "%s", err_msg());
    chat_prompt_close(&cp);
    tokenizer_free(tok);
    rm_rf(dir);
}
