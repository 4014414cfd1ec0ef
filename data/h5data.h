/* data/h5data.h — HDF5 datasets: read and validate, write, and batch.
 *
 * Schemas (ARCHITECTURE.md): root attributes `schema` ("lm", "sft", "pref",
 * "kd"), `version`, `vocab_size`, `eos_id`, `pad_id`, `tokenizer`. Token arrays
 * are flat uint16 or uint32 with int64 `offsets` of length n+1.
 *   lm : tokens, offsets (documents; the builder ends each with EOS)
 *   sft: tokens, offsets, loss_mask (uint8 per token, 1 = train on it);
 *        optional role (uint8 per example; names in attribute `roles`) and
 *        task (uint8 per example; names in attribute `tasks`)
 *   kd : as sft (the trained tokens are a teacher's outputs), plus optional
 *        teacher_topk_ids (uint16/uint32, n_tokens x K) and teacher_topk_logp
 *        (float32, n_tokens x K): row j holds the teacher's K most likely
 *        next tokens after tokens[0..j] of its example and their log-probs
 *        (temperature 1), best first; and optional candidates/ (the n-best or
 *        samples per prompt the targets were chosen from): candidates/tokens,
 *        candidates/offsets (int64, n_cand+1), candidates/example (int64 per
 *        candidate: the first example made from the same prompt),
 *        candidates/logp and candidates/score (float64 per candidate).
 *   pref: prompt/, chosen/, rejected/ groups (see PrefDataset below)
 * dataset_open and pref_dataset_open read a file fully into memory and
 * validate everything; dataset_open_stream (lm, sft, kd) keeps only the
 * file's metadata and reads rows on demand (below, "Streaming"). Validation:
 * schema attribute, dtypes, shapes, monotonic offsets starting at 0 and ending
 * at the token count, token ids < vocab_size, non-empty. Every failure names
 * the file, the dataset and the index.
 */
#ifndef RETORT_H5DATA_H
#define RETORT_H5DATA_H

#include <stdint.h>

typedef enum { SCHEMA_LM = 0, SCHEMA_SFT, SCHEMA_PREF, SCHEMA_KD } Schema;

const char *schema_name(Schema s);
/* -1 (error set) for an unknown name. */
int schema_from_name(const char *name, Schema *out);

#define H5DATA_VERSION 1

typedef struct {
    char path[1024];
    Schema schema;
    int version;
    int vocab_size;
    int eos_id;
    int pad_id;
    char tokenizer[256];
    int64_t n_docs;       /* documents (lm) or examples (sft) */
    int64_t n_tokens;
    uint32_t *tokens;     /* (n_tokens) */
    int64_t *offsets;     /* (n_docs + 1) */
    uint8_t *loss_mask;   /* (n_tokens), sft only, else NULL */
    uint8_t *role;        /* (n_docs), optional, else NULL */
    int n_roles;
    char **role_names;    /* (n_roles) */
    uint8_t *task;        /* (n_docs), optional, else NULL */
    int n_tasks;
    char **task_names;    /* (n_tasks) */
    /* kd only, each optional */
    int topk;             /* K; 0 = no teacher_topk_* */
    uint32_t *topk_ids;   /* (n_tokens, K) */
    float *topk_logp;     /* (n_tokens, K) */
    int64_t n_cand;       /* candidates (0 = none) */
    int64_t n_cand_tokens;
    uint32_t *cand_tokens;   /* (n_cand_tokens) */
    int64_t *cand_offsets;   /* (n_cand + 1) */
    int64_t *cand_example;   /* (n_cand), non-decreasing, < n_docs */
    double *cand_logp, *cand_score; /* (n_cand) */
    int has_role, has_task;  /* the file has a role / task column (either mode) */
    /* streamed (dataset_open_stream): the open file; then every array above
     * is NULL and rows, tags and teacher rows are read on demand */
    struct DatasetStream *stream;
} Dataset;

/* Opens and validates. On failure returns -1 with the error set and leaves
 * nothing allocated. */
int dataset_open(Dataset *ds, const char *path);
void dataset_close(Dataset *ds);

/* ---- streaming: datasets larger than memory ----
 * dataset_open_stream opens an lm, sft or kd file and reads its metadata
 * only: the attributes, every column's dtype and length, offsets[0] = 0 and
 * offsets[n_docs] = n_tokens (a chunked column's chunks are checked to be
 * stored, and inside the file, as reads reach them). Nothing of size
 * O(n_tokens) or O(n_docs) is kept: the arrays of Dataset stay NULL, and
 * rows are read by HDF5 hyperslab when a loader asks for them (an lm window
 * is the token range [item*T, item*T + T+1); an sft/kd example reads its two
 * offsets, then its tokens and loss mask; its task byte and its teacher rows
 * likewise), each column through a chunk cache of DATASET_STREAM_CACHE bytes
 * and the file's metadata cache held small (h5stream.c).
 * What a read brings in is validated then (token ids < vocab_size, offsets
 * ordered and inside the stream, masks 0/1, tags named, teacher rows as
 * dataset_open checks them), and a bad value or a failed read is an error
 * naming the file, the dataset and the index. kd's candidates/ group is not
 * opened (training never reads it). The reader is safe to call from several
 * threads (one lock; HDF5 itself is built thread-safe on the supported
 * systems, and the loader checks before it reads in the background). */
#define DATASET_STREAM_CACHE (2u << 20) /* bytes of HDF5 chunk cache per column */
int dataset_open_stream(Dataset *ds, const char *path);
/* Whether `path` should be streamed under data.stream = "auto": when the
 * file is larger than DATASET_STREAM_AUTO_BYTES (its data would take about
 * twice that in memory: uint16 tokens are widened to uint32). 1 yes, 0 no,
 * -1 (error set) when it cannot be examined. */
#define DATASET_STREAM_AUTO_BYTES ((int64_t)1 << 30)
int dataset_stream_auto(const char *path);
/* The task id of example `item` (has_task), in either mode. 0 or -1 (error set). */
int dataset_task_of(const Dataset *ds, int64_t item, int *task);

/* ---- writing (used by `retort data build` and by tests) ----
 * Documents are appended one at a time and written in chunks; the file is
 * written as path + ".tmp" and renamed over path by dataset_writer_close. */
typedef struct DatasetWriter DatasetWriter;
DatasetWriter *dataset_writer_open(const char *path, Schema schema, int vocab_size, int eos_id,
                                   int pad_id, const char *tokenizer);
/* loss_mask may be NULL for lm. role < 0 means no role column. */
int dataset_writer_add(DatasetWriter *w, const uint32_t *tokens, const uint8_t *loss_mask,
                       int64_t n, int role);
/* The same in two steps, for a document too long to hold in memory (plain
 * text builds one document from a whole file): append its tokens in pieces,
 * then end it. dataset_writer_add = append + end_doc. */
int dataset_writer_append(DatasetWriter *w, const uint32_t *tokens, const uint8_t *loss_mask,
                          int64_t n);
int dataset_writer_end_doc(DatasetWriter *w, int role);
/* end_doc with a task id as well (< 0: none; sft and kd; every document has
 * one or none, like roles). */
int dataset_writer_end_doc_tagged(DatasetWriter *w, int role, int task);
/* Sets the names behind role ids / task ids (optional, sft and kd). */
int dataset_writer_set_roles(DatasetWriter *w, const char *const *names, int n);
int dataset_writer_set_tasks(DatasetWriter *w, const char *const *names, int n);
/* kd: K teacher log-probs per token. Call set_topk before the first token;
 * then append_topk must have given one row of K per token when each document
 * ends. ids < vocab_size and distinct within a row, logp finite and <= 0. */
int dataset_writer_set_topk(DatasetWriter *w, int K);
int dataset_writer_append_topk(DatasetWriter *w, const uint32_t *ids, const float *logp,
                               int64_t n);
/* kd: one candidate (n >= 0 tokens) for the prompt whose first example is
 * `example` (examples may be added later; the index is checked at close). */
int dataset_writer_add_candidate(DatasetWriter *w, int64_t example, const uint32_t *tokens,
                                 int64_t n, double logp, double score);
/* Flushes, writes attributes, closes, renames. -1 with error set on failure
 * (the .tmp is removed; an existing file at path is left as it was). */
int dataset_writer_close(DatasetWriter *w);
/* Frees without writing anything (removes the .tmp). */
void dataset_writer_abort(DatasetWriter *w);
/* How much of its input the caller has read (bytes done of total; total 0:
 * unknown): a write that runs out of disk space then says how much the whole
 * file needs, not only the data so far. */
void dataset_writer_set_progress(DatasetWriter *w, int64_t done, int64_t total);

/* ---- batching ----
 * lm : the token stream is cut into windows of T+1 tokens starting at
 *      multiples of T; inputs = window[0:T], targets = window[1:T+1].
 * sft, kd: one example per row, truncated to T+1 tokens, right-padded;
 *      targets[j] = tokens[j+1] where loss_mask[j+1] == 1, else -1.
 * Items are visited in an order shuffled per epoch from (seed, epoch), so the
 * data position is just (epoch, pos) and is stored in checkpoints.
 * An item range [first, first+count) lets a file be split into train/val.
 *
 * Two orders: an in-memory dataset's loader holds the epoch's Fisher-Yates
 * permutation (epoch_order, an int64 per item); a streamed dataset's loader
 * holds none and computes position -> item with epoch_permute, a stateless
 * keyed bijection of [0, count) (the same (seed, epoch) give the same order
 * on every rank and after any resume). The two orders differ, so data.stream
 * decides a run's order; loader_use_permute switches an in-memory loader to
 * the streamed order (for tests that compare the two readers row by row).
 * A streamed loader also reads ahead: after handing out a batch it asks a
 * background thread (pthreads) to read the rows of the next one (the same
 * number of rows at the next positions), and the next call takes them when
 * they are the rows it wants, else reads synchronously; memory is one
 * batch's rows. */
typedef struct {
    const Dataset *ds;
    int T;
    int shuffle;
    uint64_t seed;
    int64_t first, count;   /* the item range this loader visits */
    int64_t epoch, pos;     /* data position */
    int64_t *order;         /* (count) permutation for the current epoch */
    int64_t truncated;      /* sft examples longer than T+1 seen so far */
    int64_t *subset;        /* (count) the items visited, when not a range; else NULL */
    int permute;            /* order by epoch_permute, order == NULL (streamed datasets) */
    struct Prefetch *prefetch; /* streamed: the read-ahead thread, started on first use */
    int64_t read_ahead;     /* rows handed out that the read-ahead thread had read */
} DataLoader;

/* Number of items (windows or examples) the dataset offers at this T. */
int64_t dataset_num_items(const Dataset *ds, int T);
/* -1 (error set) if the range is empty or T < 1. */
int loader_init(DataLoader *dl, const Dataset *ds, int T, uint64_t seed, int shuffle,
                int64_t first, int64_t count);
/* The same over an explicit list of items (copied), e.g. the examples of one
 * role; -1 (error set) if the list is empty or an item is out of range. */
int loader_init_subset(DataLoader *dl, const Dataset *ds, int T, uint64_t seed, int shuffle,
                       const int64_t *items, int64_t count);
/* Items (examples) whose role is `role` (a name in the dataset's roles
 * attribute): a new array (free it) and its length in *count. -1 with the
 * error set when the dataset has no role column or no such role. A streamed
 * dataset's role column is scanned in chunks; the list itself (8 bytes per
 * example of the role) is what a role stage keeps in memory. */
int dataset_role_items(const Dataset *ds, const char *role, int64_t **items, int64_t *count);
void loader_free(DataLoader *dl);
/* sft, kd: how many of the loader's items are longer than T+1 tokens (each
 * row keeps its first T+1); 0 for lm, whose windows are cut, never truncated.
 * A streamed dataset's offsets are scanned in chunks; -1 (error set) when
 * that read fails. */
int64_t loader_count_truncated(const DataLoader *dl);
/* The visiting order of one epoch, order[0..count): the identity, or a
 * Fisher-Yates permutation from (seed, epoch) when shuffle (shared by the
 * DataLoader and the preference-pair loader, so both shuffle alike). */
void epoch_order(int64_t *order, int64_t count, uint64_t seed, int64_t epoch, int shuffle);
/* The item at position pos of epoch `epoch` in the streamed order: the
 * identity without shuffle, else a keyed Feistel network (4 rounds of
 * SplitMix64 on half-words, keys from (seed, epoch)) over the smallest
 * even-width power of two >= count, cycle-walked back into [0, count): a
 * bijection of [0, count) for every count >= 1, computed in O(1) memory
 * (expected < 4 network evaluations per position). */
int64_t epoch_permute(int64_t count, uint64_t seed, int64_t epoch, int shuffle, int64_t pos);
/* Switches a loader to the streamed order (epoch_permute), freeing its
 * order array; a streamed dataset's loader starts so. */
void loader_use_permute(DataLoader *dl);
void loader_seek(DataLoader *dl, int64_t epoch, int64_t pos);
/* Fills B rows of inputs and targets (B*T ints each, host memory). Padding
 * inputs are eos_id; their targets are -1. 0, or -1 with the error set when a
 * streamed read fails or finds bad data (the position has advanced anyway). */
int loader_next(DataLoader *dl, int B, int *inputs, int *targets);
/* The same, also writing the item index of each row into items (B). */
int loader_next_items(DataLoader *dl, int B, int *inputs, int *targets, int64_t *items);
/* One rank's share: advances by B items (their indices into items, all B)
 * but reads only rows [first, first + n) (into the same places of inputs and
 * targets as loader_next_items would; the other rows are left as they were). */
int loader_next_slice(DataLoader *dl, int B, int first, int n, int *inputs, int *targets,
                      int64_t *items);
/* kd with teacher_topk: the K-wide teacher rows aligned with row inputs of
 * item (an example): ids (T,K) and logp (T,K); positions past the example
 * get id 0 and logp 0 (their targets are -1, so nothing reads them).
 * 0, or -1 (error set) when a streamed read fails or finds a bad row. */
int dataset_topk_row(const Dataset *ds, int64_t item, int T, int *ids, float *logp);
/* sft/kd: example item's first token index and length (offsets[item],
 * offsets[item + 1] - offsets[item]), either mode; a streamed file reads and
 * checks the two offsets. 0, or -1 (error set). */
int dataset_example_span(const Dataset *ds, int64_t item, int64_t *start, int64_t *len);
/* kd with teacher_topk: the teacher rows of tokens [first, first + n), ids
 * and logp (n, K), either mode (data.pack reads them by token index). 0, or
 * -1 (error set) when a streamed read fails or finds a bad row. */
int dataset_topk_tokens(const Dataset *ds, int64_t first, int64_t n, int *ids, float *logp);
/* One row of item (lm window or sft/kd example) as loader_next makes it; 1
 * when the example was longer than T+1 tokens (cut), 0 when not, -1 (error set). */
int dataset_row(const Dataset *ds, int64_t item, int T, int *in, int *tg);

/* ---- mixtures: several datasets drawn as one stream (data.mix) ----
 * The global stream is defined without ranks or batches: example i (0, 1,
 * ...) comes from source mix_source(m, i), found by comparing a uniform
 * number from a counter-based hash of (seed, i) with the cumulative
 * normalised weights; each source walks its own items in epoch permutations
 * (a DataLoader seeded per source), so a source's position is simply how
 * many of its examples were drawn (`consumed`). Every rank draws the whole
 * global batch, so any world size sees the same stream, and the position
 * (index, consumed[]) resumes it exactly. Sources must agree on schema. */
typedef struct {
    int n;                 /* sources */
    DataLoader *src;       /* (n) each source's items in its epoch permutations */
    double *cum;           /* (n) cumulative normalised weights; cum[n-1] = 1 */
    uint64_t seed;
    int64_t index;         /* examples drawn so far = the next example's index */
} MixLoader;

/* ds (n), weights (n, > 0); counts (n) the items of each file drawn from,
its first counts[s] (NULL: all of them; the rest may be held out for
validation). -1 (error set) if a source offers no item at T. */
int mix_init(MixLoader *m, const Dataset *const *ds, const double *weights,
             const int64_t *counts, int n, int T, uint64_t seed, int shuffle);
void mix_free(MixLoader *m);
/* The source of global example i (a pure function of the seed, weights and i). */
int mix_source(const MixLoader *m, int64_t i);
/* Items of one pass: the sources' items together. */
int64_t mix_items(const MixLoader *m);
/* Per source, its examples drawn so far (n values). */
void mix_consumed(const MixLoader *m, int64_t *consumed);
/* Moves to global index `index` with each source at consumed[s]; consumed
 * NULL: replays the stream from 0 to find them. */
void mix_seek(MixLoader *m, int64_t index, const int64_t *consumed);
/* B rows as loader_next_items, with each row's source (B) when not NULL. */
int mix_next(MixLoader *m, int B, int *inputs, int *targets, int *sources, int64_t *items);
/* The same reading only rows [first, first + n) (loader_next_slice). */
int mix_next_slice(MixLoader *m, int B, int first, int n, int *inputs, int *targets,
                   int *sources, int64_t *items);

/* ---- pref (preference pairs, for DPO) ----
 * Groups prompt/, chosen/, rejected/, each `tokens` (uint16/uint32) and
 * `offsets` (int64, n_pairs+1); optional ref_logp_chosen, ref_logp_rejected
 * (float64 per pair). The builder ends chosen and rejected with EOS; the prompt
 * has none. pref_dataset_open validates like dataset_open (attributes, dtypes,
 * monotonic offsets, the same pair count in all three groups, ids < vocab_size,
 * no empty response) and names file, dataset and index on failure.
 *
 * Root attribute `boundary` says how prompt and responses were cut apart
 * (data/build.h): "joint" (TRL 1.x: prompt + response encoded together, the
 * response starting where the prompt's own encoding stops being a prefix of
 * both), "separate" (TRL 0.x: each encoded on its own) or "tokens" (ids that
 * never were text apart, e.g. `retort pairs`' samples). A file without it
 * (written before the attribute existed) reads as "separate". */
typedef struct {
    uint32_t *tokens;   /* (n_tokens) */
    int64_t *offsets;   /* (n_pairs + 1) */
    int64_t n_tokens;
} PrefPart;

typedef struct {
    char path[1024];
    int version;
    int vocab_size;
    int eos_id;
    int pad_id;
    char tokenizer[256];
    char boundary[16];  /* "joint", "separate" or "tokens" (above) */
    int64_t n_pairs;
    PrefPart prompt, chosen, rejected;
    double *ref_logp_chosen;    /* (n_pairs), optional, else NULL */
    double *ref_logp_rejected;  /* (n_pairs), optional, else NULL */
    /* how the ref_logp_* were computed (root attributes written by
     * pref_dataset_write_ref), -1 when absent: the row length T and the
     * truncation limits they hold for */
    int ref_seq_len, ref_max_prompt_len, ref_max_completion_len;
    char ref_model[1024];
} PrefDataset;

/* -1 with the error set (nothing left allocated) on failure. */
int pref_dataset_open(PrefDataset *pd, const char *path);
void pref_dataset_close(PrefDataset *pd);

/* Writes a pref file (.tmp + rename, like DatasetWriter). */
typedef struct PrefWriter PrefWriter;
PrefWriter *pref_writer_open(const char *path, int vocab_size, int eos_id, int pad_id,
                             const char *tokenizer);
/* One pair; n_prompt may be 0, chosen and rejected must not be empty. */
int pref_writer_add(PrefWriter *pw, const uint32_t *prompt, int64_t n_prompt,
                    const uint32_t *chosen, int64_t n_chosen, const uint32_t *rejected,
                    int64_t n_rejected);
/* The file's `boundary` attribute ("joint", "separate" or "tokens"); unset,
 * none is written (the file then reads as "separate"). 0, or -1 (error set)
 * for another value. */
int pref_writer_set_boundary(PrefWriter *pw, const char *boundary);
int pref_writer_close(PrefWriter *pw);
void pref_writer_abort(PrefWriter *pw);
void pref_writer_set_progress(PrefWriter *pw, int64_t done, int64_t total);

/* Adds (or replaces) ref_logp_chosen / ref_logp_rejected (n_pairs each) in an
 * existing pref file, with root attributes ref_model, ref_seq_len,
 * ref_max_prompt_len and ref_max_completion_len saying how they were computed.
 * The file is copied to path.tmp, changed there and renamed over path, so a
 * failure leaves the original as it was. */
int pref_dataset_write_ref(const char *path, const double *ref_c, const double *ref_r,
                           int64_t n_pairs, const char *model, int seq_len, int max_prompt_len,
                           int max_completion_len);

/* The root `schema` attribute of an HDF5 dataset file, without reading the rest. */
int dataset_peek_schema(const char *path, Schema *out);

#endif
