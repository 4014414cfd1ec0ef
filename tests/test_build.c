/* tests/test_build.c — `retort data build` beyond lm / prompt+completion:
 * chat conversations (one sft example per assistant turn, template "plain"),
 * per-line roles, max_len truncation, the pref schema (writer, builder and the
 * validating reader), and `retort data inspect` / `validate`. Each feature is
 * checked on the arrays read back; bad inputs on the message they give. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>

#include "data/build.h"
#include "data/h5data.h"
#include "data/inspect.h"
#include "data/tokenizer.h"
#include "tests/testutil.h"

#define EOS 256 /* the byte tokenizer's EOS */

/* ---------------------------------------------------------------- helpers */

typedef struct {
    char dir[256], in[512], out[512];
} Paths;

static Paths tmp_paths(void) {
    Paths p;
    make_temp_dir(p.dir, sizeof p.dir, "build2");
    snprintf(p.in, sizeof p.in, "%s/in.jsonl", p.dir);
    snprintf(p.out, sizeof p.out, "%s/out.h5", p.dir);
    return p;
}

static BuildOptions opts(const Paths *p, Schema s) {
    return (BuildOptions){.input = p->in, .output = p->out, .schema = s, .tokenizer = "bytes",
                          .quiet = 1};
}

/* One expected piece of an example: its bytes, its mask, and an EOS after it. */
typedef struct {
    const char *text;
    uint8_t mask;
    int eos;
} Piece;

/* Asserts example `ex` of ds is exactly the pieces (bytes + EOS) with their masks. */
static void assert_example(const Dataset *ds, int64_t ex, const Piece *pieces, int n_pieces) {
    int64_t pos = ds->offsets[ex], end = ds->offsets[ex + 1];
    for (int k = 0; k < n_pieces; k++) {
        size_t n = strlen(pieces[k].text);
        for (size_t i = 0; i <= n; i++) {
            if (i == n && !pieces[k].eos) break;
            cr_assert_lt(pos, end, "example %ld is shorter than expected (piece %d)", ex, k);
            uint32_t want = i < n ? (unsigned char)pieces[k].text[i] : EOS;
            cr_assert_eq(ds->tokens[pos], want, "example %ld piece %d byte %zu: %u != %u", ex, k,
                         i, ds->tokens[pos], want);
            cr_assert_eq(ds->loss_mask[pos], pieces[k].mask, "example %ld piece %d byte %zu mask",
                         ex, k, i);
            pos++;
        }
    }
    cr_assert_eq(pos, end, "example %ld has %ld tokens more than expected", ex, end - pos);
}

/* The build must fail and its message contain every needle, leaving no file. */
static void assert_build_fails(const BuildOptions *o, const char *const *needles) {
    unlink(o->output); /* an earlier good build's file: a failed one leaves that alone */
    err_clear();
    cr_assert_eq(data_build(o), -1, "the build succeeded");
    for (; *needles; needles++) assert_contains(err_msg(), *needles);
    cr_assert(!path_exists(o->output), "a failed build left %s behind", o->output);
}
#define BUILD_FAILS(o, ...) assert_build_fails(o, (const char *const[]){__VA_ARGS__, NULL})

/* ------------------------------------------------------------------ chat */

Test(chat, one_example_per_assistant_turn_with_masks) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"},"
                     " {\"role\": \"user\", \"content\": \"hi\"},"
                     " {\"role\": \"assistant\", \"content\": \"yo\"},"
                     " {\"role\": \"user\", \"content\": \"q\"},"
                     " {\"role\": \"assistant\", \"content\": \"a\"}]}\n");
    BuildOptions o = opts(&p, SCHEMA_SFT);
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.lines, 1);
    cr_assert_eq(st.docs, 2);
    cr_assert_eq(st.truncated, 0);
    cr_assert_eq(st.trained_tokens, 4 + 3);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, p.out), 0, "%s", err_msg());
    cr_assert_eq(ds.n_docs, 2);
    cr_assert_null(ds.role);
    const Piece ex0[] = {{"<|system|>\nS\n<|user|>\nhi\n<|assistant|>\n", 0, 0}, {"yo\n", 1, 1}};
    assert_example(&ds, 0, ex0, 2);
    const Piece ex1[] = {{"<|system|>\nS\n<|user|>\nhi\n<|assistant|>\nyo\n", 0, 1},
                         {"<|user|>\nq\n<|assistant|>\n", 0, 0},
                         {"a\n", 1, 1}};
    assert_example(&ds, 1, ex1, 3);
    cr_assert_eq(st.tokens, ds.n_tokens);
    dataset_close(&ds);
    rm_rf(p.dir);
}

Test(chat, custom_field_mixed_with_prompt_completion_lines) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"prompt\": \"P\", \"completion\": \"C\"}\n"
                     "{\"conv\": [{\"role\": \"user\", \"content\": \"u\"},"
                     " {\"role\": \"assistant\", \"content\": \"\"}]}\n");
    BuildOptions o = opts(&p, SCHEMA_SFT);
    o.messages_field = "conv";
    o.chat_template = "plain";
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, p.out), 0, "%s", err_msg());
    cr_assert_eq(ds.n_docs, 2);
    const Piece ex0[] = {{"P", 0, 0}, {"C", 1, 1}};
    assert_example(&ds, 0, ex0, 2);
    const Piece ex1[] = {{"<|user|>\nu\n<|assistant|>\n", 0, 0}, {"\n", 1, 1}};
    assert_example(&ds, 1, ex1, 2);
    dataset_close(&ds);
    rm_rf(p.dir);
}

Test(chat, role_field_gives_role_ids_in_first_seen_order) {
    Paths p = tmp_paths();
    write_text(p.in,
               "{\"role\": \"planner\", \"prompt\": \"a\", \"completion\": \"b\"}\n"
               "{\"role\": \"caller\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"},"
               " {\"role\": \"assistant\", \"content\": \"y\"},"
               " {\"role\": \"assistant\", \"content\": \"z\"}]}\n"
               "{\"role\": \"planner\", \"prompt\": \"c\", \"completion\": \"d\"}\n"
               "{\"role\": \"summarizer\", \"prompt\": \"e\", \"completion\": \"f\"}\n");
    BuildOptions o = opts(&p, SCHEMA_SFT);
    o.role_field = "role";
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 5);
    cr_assert_eq(st.n_roles, 3);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, p.out), 0, "%s", err_msg());
    cr_assert_not_null(ds.role);
    cr_assert_eq(ds.n_roles, 3);
    cr_assert_str_eq(ds.role_names[0], "planner");
    cr_assert_str_eq(ds.role_names[1], "caller");
    cr_assert_str_eq(ds.role_names[2], "summarizer");
    uint8_t want[5] = {0, 1, 1, 0, 2};
    for (int i = 0; i < 5; i++) cr_assert_eq(ds.role[i], want[i], "role[%d]", i);
    dataset_close(&ds);

    /* every line must carry the role once role_field is on */
    write_text(p.in, "{\"role\": \"planner\", \"prompt\": \"a\", \"completion\": \"b\"}\n"
                     "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
    char where[600];
    snprintf(where, sizeof where, "%s:2:", p.in);
    BUILD_FAILS(&o, where, "field 'role' is missing", "--role-field");
    write_text(p.in, "{\"role\": 3, \"prompt\": \"a\", \"completion\": \"b\"}\n");
    BUILD_FAILS(&o, "field 'role' is an integer, not a string");
    /* roles belong to sft only */
    o.schema = SCHEMA_LM;
    BUILD_FAILS(&o, "only sft datasets carry roles");
    rm_rf(p.dir);
}

Test(chat, bad_conversations_are_named) {
    Paths p = tmp_paths();
    BuildOptions o = opts(&p, SCHEMA_SFT);
    char where[600];
    snprintf(where, sizeof where, "%s:1:", p.in);
    write_text(p.in, "{\"messages\": \"hello\"}\n");
    BUILD_FAILS(&o, where, "field 'messages' is a string, not an array");
    write_text(p.in, "{\"messages\": []}\n");
    BUILD_FAILS(&o, where, "'messages' is an empty array");
    write_text(p.in, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, 7]}\n");
    BUILD_FAILS(&o, where, "messages[1] is an integer, not an object");
    write_text(p.in, "{\"messages\": [{\"role\": \"user\"}]}\n");
    BUILD_FAILS(&o, where, "messages[0]: field 'content' is missing");
    write_text(p.in, "{\"messages\": [{\"content\": \"a\"}]}\n");
    BUILD_FAILS(&o, where, "messages[0]: field 'role' is missing");
    write_text(p.in, "{\"messages\": [{\"role\": \"user\", \"content\": [1]}]}\n");
    BUILD_FAILS(&o, where, "messages[0]: field 'content' is an array, not a string");
    write_text(p.in, "{\"messages\": [{\"role\": \"bot\", \"content\": \"a\"}]}\n");
    BUILD_FAILS(&o, where, "role 'bot' is not one of system, user, assistant");
    write_text(p.in, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n");
    BUILD_FAILS(&o, where, "no assistant turn");

    /* skip_bad skips a bad conversation whole and counts it */
    write_text(p.in, "{\"messages\": [{\"role\": \"assistant\", \"content\": \"ok\"}]}\n"
                     "{\"messages\": [{\"role\": \"assistant\", \"content\": \"x\"},"
                     " {\"role\": \"nobody\", \"content\": \"y\"}]}\n");
    o.skip_bad = 1;
    o.quiet = 1;
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 1);
    cr_assert_eq(st.skipped, 1);
    rm_rf(p.dir);
}

Test(chat, unknown_template_is_refused) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"messages\": [{\"role\": \"assistant\", \"content\": \"ok\"}]}\n");
    BuildOptions o = opts(&p, SCHEMA_SFT);
    o.chat_template = "chatml"; /* neither "plain" nor a template's path */
    BUILD_FAILS(&o, "chat template 'chatml'", "plain", ".jinja");
    rm_rf(p.dir);
}

/* GLPFT / α-UMi: one example per turn of a trained role, whatever its name */
#define AGENT_LINE                                                                      \
    "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"},"                         \
    " {\"role\": \"planner\", \"content\": \"p1\"},"                                    \
    " {\"role\": \"caller\", \"content\": \"c\"},"                                      \
    " {\"role\": \"observation\", \"content\": \"o\"},"                                 \
    " {\"role\": \"planner\", \"content\": \"p2\"},"                                    \
    " {\"role\": \"summarizer\", \"content\": \"s\"}]}\n"

Test(chat, train_roles_give_one_example_per_role_turn) {
    Paths p = tmp_paths();
    write_text(p.in, AGENT_LINE);
    BuildOptions o = opts(&p, SCHEMA_SFT);
    o.train_roles = "summarizer, planner,caller"; /* the order of the role names */
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 4);
    cr_assert_eq(st.n_roles, 3);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, p.out), 0, "%s", err_msg());
    cr_assert_eq(ds.n_docs, 4);
    cr_assert_eq(ds.n_roles, 3);
    cr_assert_str_eq(ds.role_names[0], "summarizer");
    cr_assert_str_eq(ds.role_names[1], "planner");
    cr_assert_str_eq(ds.role_names[2], "caller");
    uint8_t want_roles[4] = {1, 2, 1, 0}; /* planner, caller, planner, summarizer */
    for (int i = 0; i < 4; i++) cr_assert_eq(ds.role[i], want_roles[i], "role[%d]", i);
    const Piece ex0[] = {{"<|user|>\nq\n<|planner|>\n", 0, 0}, {"p1\n", 1, 1}};
    assert_example(&ds, 0, ex0, 2);
    const Piece ex1[] = {{"<|user|>\nq\n<|planner|>\np1\n", 0, 1}, {"<|caller|>\n", 0, 0},
                         {"c\n", 1, 1}};
    assert_example(&ds, 1, ex1, 3);
    const Piece ex3[] = {{"<|user|>\nq\n<|planner|>\np1\n", 0, 1},
                         {"<|caller|>\nc\n", 0, 1},
                         {"<|observation|>\no\n<|planner|>\np2\n", 0, 1},
                         {"<|summarizer|>\n", 0, 0},
                         {"s\n", 1, 1}};
    assert_example(&ds, 3, ex3, 5);
    dataset_close(&ds);

    /* one role only: the others are context (no EOS after them), every listed
     * name still gets its id */
    o.train_roles = "caller,planner";
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 3);
    cr_assert_eq(dataset_open(&ds, p.out), 0, "%s", err_msg());
    cr_assert_eq(ds.n_roles, 2);
    cr_assert_str_eq(ds.role_names[0], "caller");
    dataset_close(&ds);
    o.train_roles = "summarizer,judge";
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 1);
    cr_assert_eq(dataset_open(&ds, p.out), 0, "%s", err_msg());
    cr_assert_eq(ds.n_roles, 2);
    cr_assert_str_eq(ds.role_names[1], "judge");
    const Piece only[] = {{"<|user|>\nq\n<|planner|>\np1\n<|caller|>\nc\n<|observation|>\no\n"
                           "<|planner|>\np2\n<|summarizer|>\n", 0, 0},
                          {"s\n", 1, 1}};
    assert_example(&ds, 0, only, 2);
    dataset_close(&ds);
    rm_rf(p.dir);
}

Test(chat, train_roles_truncate_from_the_left_and_refuse_bad_input) {
    Paths p = tmp_paths();
    write_text(p.in, AGENT_LINE);
    BuildOptions o = opts(&p, SCHEMA_SFT);
    o.train_roles = "planner,caller,summarizer";
    o.max_len = 8; /* "s\n" + EOS = 3: the last 5 context tokens stay */
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 4);
    cr_assert_eq(st.truncated, 4);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, p.out), 0, "%s", err_msg());
    const Piece want[] = {{"er|>\n", 0, 0}, {"s\n", 1, 1}};
    assert_example(&ds, 3, want, 2);
    dataset_close(&ds);
    o.max_len = 0;

    char where[600];
    snprintf(where, sizeof where, "%s:1:", p.in);
    write_text(p.in, "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"},"
                     " {\"role\": \"assistant\", \"content\": \"a\"}]}\n");
    BUILD_FAILS(&o, where, "no turn of a trained role (planner, caller, summarizer)");
    write_text(p.in, "{\"messages\": [{\"role\": \"bad role\", \"content\": \"q\"}]}\n");
    BUILD_FAILS(&o, where, "role 'bad role' is not a name");
    write_text(p.in, "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
    BUILD_FAILS(&o, where, "with train_roles every line is a chat conversation");
    write_text(p.in, AGENT_LINE);
    o.train_roles = "planner,planner";
    BUILD_FAILS(&o, "'planner' is listed twice");
    o.train_roles = "planner,,caller";
    BUILD_FAILS(&o, "'' is not a role name");
    o.train_roles = "planner";
    o.role_field = "role";
    BUILD_FAILS(&o, "train_roles and role_field 'role' both set the role column");
    o.role_field = NULL;
    o.schema = SCHEMA_LM;
    BUILD_FAILS(&o, "only sft datasets are built from chat turns");
    /* without train_roles such roles stay refused, with a hint */
    o.schema = SCHEMA_SFT;
    o.train_roles = NULL;
    BUILD_FAILS(&o, "role 'planner' is not one of system, user, assistant", "--train-roles");
    rm_rf(p.dir);
}

/* ------------------------------------------------------------ truncation */

Test(truncate, keeps_prompt_end_and_completion_start) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"prompt\": \"abcdefgh\", \"completion\": \"xy\"}\n"  /* 8 + 3 > 6 */
                     "{\"prompt\": \"ab\", \"completion\": \"0123456789\"}\n" /* 2 + 11 */
                     "{\"prompt\": \"a\", \"completion\": \"b\"}\n"           /* 3: kept */
                     "{\"prompt\": \"abc\", \"completion\": \"12345\"}\n");  /* 3 + 6 */
    BuildOptions o = opts(&p, SCHEMA_SFT);
    o.max_len = 6;
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 4);
    cr_assert_eq(st.truncated, 3);
    cr_assert_eq(st.dropped, 0);
    cr_assert_eq(st.tokens, 6 + 6 + 3 + 6);
    cr_assert_eq(st.trained_tokens, 3 + 6 + 2 + 6);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, p.out), 0, "%s", err_msg());
    cr_assert_eq(ds.n_docs, 4);
    const Piece ex0[] = {{"fgh", 0, 0}, {"xy", 1, 1}};
    assert_example(&ds, 0, ex0, 2);
    const Piece ex1[] = {{"012345", 1, 0}}; /* the completion alone fills max_len: no EOS */
    assert_example(&ds, 1, ex1, 1);
    const Piece ex2[] = {{"a", 0, 0}, {"b", 1, 1}};
    assert_example(&ds, 2, ex2, 2);
    const Piece ex3[] = {{"12345", 1, 1}}; /* exactly max_len: the prompt goes */
    assert_example(&ds, 3, ex3, 1);
    dataset_close(&ds);
    rm_rf(p.dir);
}

Test(truncate, chat_turns_are_cut_from_the_left) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"messages\": [{\"role\": \"user\", \"content\": \"long question\"},"
                     " {\"role\": \"assistant\", \"content\": \"ok\"}]}\n");
    BuildOptions o = opts(&p, SCHEMA_SFT);
    o.max_len = 10; /* completion "ok\n" + EOS = 4, so 6 prompt tokens stay */
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.truncated, 1);
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, p.out), 0, "%s", err_msg());
    const Piece want[] = {{"ant|>\n", 0, 0}, {"ok\n", 1, 1}};
    assert_example(&ds, 0, want, 2);
    dataset_close(&ds);
    rm_rf(p.dir);
}

static void redirect_stdout(void) { cr_redirect_stdout(); }

Test(truncate, report_counts_and_bad_values, .init = redirect_stdout) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"prompt\": \"abcdefgh\", \"completion\": \"xy\"}\n"
                     "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
    BuildOptions o = opts(&p, SCHEMA_SFT);
    o.max_len = 4;
    o.quiet = 0;
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    fflush(stdout);
    char report[2048] = {0};
    size_t n = fread(report, 1, sizeof report - 1, cr_get_redirected_stdout());
    cr_assert_gt(n, 0);
    assert_contains(report, "max_len 4: 1 examples truncated, 0 dropped");
    o.quiet = 1;
    o.max_len = -1;
    BUILD_FAILS(&o, "max_len -1");
    o.max_len = 8;
    o.schema = SCHEMA_LM;
    BUILD_FAILS(&o, "schema 'lm' has no max_len");
    rm_rf(p.dir);
}

/* ------------------------------------------------------------------ pref */

static void assert_part(const PrefPart *q, int64_t i, const char *text, int eos) {
    int64_t a = q->offsets[i], n = q->offsets[i + 1] - a;
    size_t len = strlen(text);
    cr_assert_eq(n, (int64_t)len + (eos ? 1 : 0), "pair %ld: %ld tokens for \"%s\"", i, n, text);
    for (size_t k = 0; k < len; k++)
        cr_assert_eq(q->tokens[a + (int64_t)k], (unsigned char)text[k], "pair %ld byte %zu", i, k);
    if (eos) cr_assert_eq(q->tokens[a + (int64_t)len], EOS, "pair %ld must end with EOS", i);
}

Test(pref, build_and_read_back) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"prompt\": \"Q1\", \"chosen\": \"good\", \"rejected\": \"bad\"}\n"
                     "\n"
                     "{\"prompt\": \"\", \"chosen\": \"\", \"rejected\": \"no\"}\n");
    BuildOptions o = opts(&p, SCHEMA_PREF);
    BuildStats st;
    cr_assert_eq(data_build_stats(&o, &st), 0, "%s", err_msg());
    cr_assert_eq(st.docs, 2);
    cr_assert_eq(st.tokens, 2 + 5 + 4 + 0 + 1 + 3);
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, p.out), 0, "%s", err_msg());
    cr_assert_eq(pd.n_pairs, 2);
    cr_assert_eq(pd.vocab_size, 257);
    cr_assert_eq(pd.eos_id, 256);
    cr_assert_str_eq(pd.tokenizer, "bytes");
    cr_assert_null(pd.ref_logp_chosen);
    assert_part(&pd.prompt, 0, "Q1", 0);
    assert_part(&pd.chosen, 0, "good", 1);
    assert_part(&pd.rejected, 0, "bad", 1);
    assert_part(&pd.prompt, 1, "", 0);
    assert_part(&pd.chosen, 1, "", 1);
    assert_part(&pd.rejected, 1, "no", 1);
    pref_dataset_close(&pd);
    /* the lm/sft reader still refuses pref files, and the pref reader lm files */
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, p.out), -1);
    assert_contains(err_msg(), "schema 'pref' holds preference pairs");
    write_text(p.in, "{\"text\": \"abc\"}\n");
    o.schema = SCHEMA_LM;
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    cr_assert_eq(pref_dataset_open(&pd, p.out), -1);
    assert_contains(err_msg(), "schema 'lm' is not a preference dataset");
    cr_assert_null(pd.prompt.tokens);
    rm_rf(p.dir);
}

Test(pref, custom_fields_and_bad_lines) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"q\": \"x\", \"win\": \"y\", \"lose\": \"z\"}\n");
    BuildOptions o = opts(&p, SCHEMA_PREF);
    o.prompt_field = "q";
    o.chosen_field = "win";
    o.rejected_field = "lose";
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, p.out), 0, "%s", err_msg());
    assert_part(&pd.rejected, 0, "z", 1);
    pref_dataset_close(&pd);
    rm_rf(p.dir);

    p = tmp_paths();
    o = opts(&p, SCHEMA_PREF);
    char where[600];
    snprintf(where, sizeof where, "%s:2:", p.in);
    write_text(p.in, "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n"
                     "{\"prompt\": \"a\", \"chosen\": \"b\"}\n");
    BUILD_FAILS(&o, where, "field 'rejected' is missing", "--rejected-field", "'pref'");
    write_text(p.in, "{\"prompt\": \"a\", \"chosen\": null, \"rejected\": \"c\"}\n");
    BUILD_FAILS(&o, "field 'chosen' is null, not a string");
    snprintf(p.in, sizeof p.in, "%s/plain.txt", p.dir);
    write_text(p.in, "just text\n");
    BUILD_FAILS(&o, "plain text", "pref");
    rm_rf(p.dir);
}

Test(pref, writer_round_trip_uint32_and_refusals) {
    Paths p = tmp_paths();
    PrefWriter *w = pref_writer_open(p.out, 70000, 69999, 0, "big");
    cr_assert_not_null(w, "%s", err_msg());
    uint32_t pr[3] = {1, 65536, 2}, ch[2] = {69000, 69999}, rj[1] = {69999};
    cr_assert_eq(pref_writer_add(w, pr, 3, ch, 2, rj, 1), 0, "%s", err_msg());
    cr_assert_eq(pref_writer_add(w, NULL, 0, rj, 1, ch, 2), 0, "%s", err_msg());
    cr_assert_eq(pref_writer_add(w, pr, 3, ch, 0, rj, 1), -1);
    assert_contains(err_msg(), "'chosen' is empty");
    uint32_t bad[1] = {70000};
    cr_assert_eq(pref_writer_add(w, pr, 3, ch, 2, bad, 1), -1);
    assert_contains(err_msg(), "token id 70000");
    assert_contains(err_msg(), "'rejected'");
    cr_assert_eq(pref_writer_close(w), 0, "%s", err_msg());
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, p.out), 0, "%s", err_msg());
    cr_assert_eq(pd.n_pairs, 2);
    cr_assert_eq(pd.prompt.n_tokens, 3);
    cr_assert_eq(pd.chosen.n_tokens, 3);
    cr_assert_eq(pd.rejected.n_tokens, 3);
    cr_assert_eq(pd.prompt.tokens[1], 65536);
    cr_assert_eq(pd.prompt.offsets[2], 3);
    cr_assert_eq(pd.chosen.tokens[2], 69999);
    cr_assert_eq(pd.rejected.tokens[1], 69000);
    pref_dataset_close(&pd);
    /* nothing added: nothing written */
    char empty[600];
    snprintf(empty, sizeof empty, "%s/empty.h5", p.dir);
    w = pref_writer_open(empty, 10, 9, 9, "t");
    cr_assert_not_null(w);
    cr_assert_eq(pref_writer_close(w), -1);
    assert_contains(err_msg(), "no documents");
    cr_assert(!path_exists(empty));
    rm_rf(p.dir);
}

/* A valid two-pair pref file (vocab 10) to break one thing in. */
static void good_pref(const char *path) {
    PrefWriter *w = pref_writer_open(path, 10, 9, 9, "t");
    cr_assert_not_null(w, "%s", err_msg());
    uint32_t a[2] = {1, 2}, b[2] = {3, 9}, c[1] = {9};
    cr_assert_eq(pref_writer_add(w, a, 2, b, 2, c, 1), 0, "%s", err_msg());
    cr_assert_eq(pref_writer_add(w, a, 1, c, 1, b, 2), 0, "%s", err_msg());
    cr_assert_eq(pref_writer_close(w), 0, "%s", err_msg());
}

/* Replaces (or, with data NULL, deletes) dataset `name` in an existing file. */
static void replace_dset(const char *path, const char *name, hid_t type, const void *data,
                         hsize_t n) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0);
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) cr_assert(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    if (data) {
        hid_t s = H5Screate_simple(1, &n, NULL);
        hid_t d = H5Dcreate2(f, name, type, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        cr_assert(d >= 0, "cannot create %s", name);
        cr_assert(H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
        H5Dclose(d);
        H5Sclose(s);
    }
    H5Fclose(f);
}

static void assert_pref_refused(const char *path, const char *const *needles) {
    PrefDataset pd;
    err_clear();
    cr_assert_eq(pref_dataset_open(&pd, path), -1, "%s was accepted", path);
    cr_assert_null(pd.prompt.tokens);
    cr_assert_null(pd.chosen.offsets);
    assert_contains(err_msg(), path);
    for (; *needles; needles++) assert_contains(err_msg(), *needles);
}
#define PREF_REFUSED(path, ...) assert_pref_refused(path, (const char *const[]){__VA_ARGS__, NULL})

Test(pref, reader_refuses_malformed_files) {
    Paths p = tmp_paths();
    good_pref(p.out);
    int64_t two_pairs_short[3] = {0, 3}; /* one pair in rejected, two elsewhere */
    replace_dset(p.out, "rejected/offsets", H5T_NATIVE_INT64, two_pairs_short, 2);
    PREF_REFUSED(p.out, "'rejected/offsets' holds 1 pairs but 'prompt/offsets' holds 2");

    good_pref(p.out);
    int64_t back[3] = {0, 2, 1};
    replace_dset(p.out, "chosen/offsets", H5T_NATIVE_INT64, back, 3);
    PREF_REFUSED(p.out, "dataset 'chosen/offsets'", "non-decreasing");

    good_pref(p.out);
    int64_t short_end[3] = {0, 2, 2};
    replace_dset(p.out, "chosen/offsets", H5T_NATIVE_INT64, short_end, 3);
    PREF_REFUSED(p.out, "'chosen/offsets'", "'chosen/tokens' holds 3 tokens");

    good_pref(p.out);
    uint16_t big[3] = {1, 2, 10};
    replace_dset(p.out, "prompt/tokens", H5T_NATIVE_UINT16, big, 3);
    PREF_REFUSED(p.out, "dataset 'prompt/tokens': tokens[2]=10 is >= vocab_size 10");

    good_pref(p.out);
    float fl[3] = {1, 2, 3};
    replace_dset(p.out, "chosen/tokens", H5T_NATIVE_FLOAT, fl, 3);
    PREF_REFUSED(p.out, "'chosen/tokens' has dtype float32; expected uint16 or uint32");

    good_pref(p.out);
    replace_dset(p.out, "rejected/tokens", 0, NULL, 0);
    PREF_REFUSED(p.out, "dataset 'rejected/tokens' is missing");

    good_pref(p.out);
    int64_t empty_resp[3] = {0, 0, 3};
    replace_dset(p.out, "rejected/offsets", H5T_NATIVE_INT64, empty_resp, 3);
    PREF_REFUSED(p.out, "pair 0 has an empty response");

    good_pref(p.out);
    double ref[1] = {-1.5};
    replace_dset(p.out, "ref_logp_chosen", H5T_NATIVE_DOUBLE, ref, 1);
    PREF_REFUSED(p.out, "'ref_logp_chosen' has 1 entries but there are 2 pairs");
    double ref2[2] = {-1.5, -2.5};
    replace_dset(p.out, "ref_logp_chosen", H5T_NATIVE_DOUBLE, ref2, 2);
    PrefDataset pd;
    cr_assert_eq(pref_dataset_open(&pd, p.out), 0, "%s", err_msg());
    cr_assert_not_null(pd.ref_logp_chosen);
    cr_assert_eq(pd.ref_logp_chosen[1], -2.5);
    cr_assert_null(pd.ref_logp_rejected);
    pref_dataset_close(&pd);
    rm_rf(p.dir);
}

/* Precomputed reference log-probs are sums of log-probs: finite and <= 0. At
 * 1df6ed0 1e300 trained silently and NaN failed 15 steps in, blaming lr; now
 * the file is refused when it is opened, naming the dataset and the pair,
 * and precompute-ref will not write such values. */
Test(pref, reader_refuses_bad_reference_log_probs) {
    Paths p = tmp_paths();
    const double bad[3] = {1e300, NAN, 0.5};
    const char *shown[3] = {"1e+300", "nan", "0.5"};
    const char *names[2] = {"ref_logp_chosen", "ref_logp_rejected"};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++) {
            good_pref(p.out);
            double ok[2] = {-1.5, -2.5}, one_bad[2] = {-1.5, bad[i]};
            replace_dset(p.out, names[k], H5T_NATIVE_DOUBLE, one_bad, 2);
            replace_dset(p.out, names[1 - k], H5T_NATIVE_DOUBLE, ok, 2);
            PREF_REFUSED(p.out, names[k], "pair 1", shown[i], "finite, <= 0",
                         "dpo precompute-ref");
        }
    good_pref(p.out);
    const double c[2] = {-1.5, 1e300}, r[2] = {-1.0, -2.0};
    err_clear();
    cr_assert_eq(pref_dataset_write_ref(p.out, c, r, 2, "m", 8, 0, 0), -1, "1e300 was written");
    assert_contains(err_msg(), "pair 1");
    rm_rf(p.dir);
}

/* ------------------------------------------------------- inspect, validate */

static char *capture_inspect(const char *path, int n, const char *tok, int *rc) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    *rc = data_inspect_to(f, path, n, tok);
    fclose(f);
    return buf;
}

Test(inspect, sft_stats_roles_and_marked_spans) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"r\": \"planner\", \"prompt\": \"ab\", \"completion\": \"cd\"}\n"
                     "{\"r\": \"caller\", \"prompt\": \"wxyz\", \"completion\": \"\"}\n");
    BuildOptions o = opts(&p, SCHEMA_SFT);
    o.role_field = "r";
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    int rc;
    char *text = capture_inspect(p.out, 5, NULL, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    assert_contains(text, "schema sft");
    assert_contains(text, "tokenizer bytes");
    assert_contains(text, "2 examples, 10 tokens");
    assert_contains(text, "example length: min 5, mean 5.0, max 5 tokens");
    assert_contains(text, "4 tokens carry loss (40.0%)");
    assert_contains(text, "roles: planner=1 caller=1");
    assert_contains(text, "example 0 (5 tokens, role planner)");
    assert_contains(text, "ab[[cd<|endoftext|>]]");
    assert_contains(text, "wxyz[[<|endoftext|>]]");
    free(text);
    text = capture_inspect(p.out, 0, "bytes", &rc);
    cr_assert_eq(rc, 0);
    cr_assert_null(strstr(text, "example 0"), "n_examples 0 printed examples: %s", text);
    free(text);
    text = capture_inspect(p.out, 1, "no-such-tokenizer", &rc);
    cr_assert_eq(rc, -1);
    assert_contains(err_msg(), "no-such-tokenizer");
    free(text);
    rm_rf(p.dir);
}

Test(inspect, lm_and_pref) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"text\": \"hello\"}\n{\"text\": \"a\"}\n");
    BuildOptions o = opts(&p, SCHEMA_LM);
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    int rc;
    char *text = capture_inspect(p.out, 1, "bytes", &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    assert_contains(text, "schema lm");
    assert_contains(text, "2 documents, 8 tokens");
    assert_contains(text, "document length: min 2, mean 4.0, max 6 tokens");
    assert_contains(text, "hello<|endoftext|>");
    cr_assert_null(strstr(text, "document 1"));
    cr_assert_null(strstr(text, "[["));
    free(text);

    write_text(p.in, "{\"prompt\": \"P\", \"chosen\": \"yes\", \"rejected\": \"no\"}\n");
    o.schema = SCHEMA_PREF;
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    text = capture_inspect(p.out, 3, NULL, &rc);
    cr_assert_eq(rc, 0, "%s", err_msg());
    assert_contains(text, "schema pref");
    assert_contains(text, "1 pairs, 8 tokens (prompt 1, chosen 4, rejected 3)");
    assert_contains(text, "chosen length: min 4, mean 4.0, max 4 tokens");
    assert_contains(text, "yes<|endoftext|>");
    assert_contains(text, "no<|endoftext|>");
    free(text);
    rm_rf(p.dir);
}

Test(validate, ok_lines_and_errors) {
    Paths p = tmp_paths();
    write_text(p.in, "{\"prompt\": \"a\", \"completion\": \"b\"}\n");
    BuildOptions o = opts(&p, SCHEMA_SFT);
    cr_assert_eq(data_build(&o), 0, "%s", err_msg());
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(data_validate_to(f, p.out), 0, "%s", err_msg());
    fclose(f);
    char want[700];
    snprintf(want, sizeof want, "ok: %s: schema sft, 1 examples, 3 tokens", p.out);
    assert_contains(buf, want);
    free(buf);

    good_pref(p.out);
    f = open_memstream(&buf, &len);
    cr_assert_eq(data_validate_to(f, p.out), 0, "%s", err_msg());
    fclose(f);
    assert_contains(buf, "schema pref, 2 pairs, 9 tokens");
    free(buf);

    int64_t back[3] = {0, 2, 1};
    replace_dset(p.out, "chosen/offsets", H5T_NATIVE_INT64, back, 3);
    f = open_memstream(&buf, &len);
    cr_assert_eq(data_validate_to(f, p.out), -1);
    fclose(f);
    cr_assert_eq(len, 0, "validate printed on failure: %s", buf);
    free(buf);
    assert_contains(err_msg(), "non-decreasing");

    cr_assert_eq(data_validate(p.in), -1);
    assert_contains(err_msg(), "not an HDF5 file");
    char absent[600];
    snprintf(absent, sizeof absent, "%s/absent.h5", p.dir);
    cr_assert_eq(data_validate(absent), -1);
    assert_contains(err_msg(), "absent.h5");
    rm_rf(p.dir);
}
