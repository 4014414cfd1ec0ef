# retort — build, dependencies, tests, benchmarks, quickstart. `make help` lists
# the targets.
#
#   make              build ./retort (CPU backend; the CUDA backend too when nvcc is found;
#                     CUDA_ARCHS="80 90" picks the GPU targets, CUDA=0 leaves it out)
#   make install      copy retort to $(DESTDIR)$(PREFIX)/bin (PREFIX=/usr/local)
#   make deps         install the Debian packages the build needs (root), or print the line
#   make test         run the whole Criterion suite (installs deps first when missing)
#   make quickstart   build, then sequence-level KD on the CPU: teacher, KD data, two students, eval table
#   make bench        CPU training throughput beside PyTorch, same model and threads,
#                     then batched generation beside transformers (bench-generate)
#   make bench-generate  batched generation throughput beside transformers generate()
#   make bench-stream peak memory of streamed training on a 100 MB and a 5 GB lm file
#   make test-gpu     CUDA ops vs CPU twins, CPU-vs-GPU training curves, determinism, memcheck
#   make bench-gpu    attention vs PyTorch SDPA, end to end vs llm.c and PyTorch (on a GPU)
#   make fixtures     regenerate the Hugging Face parity fixtures (needs the venv)
#   make SANITIZE=1 test   the suite under ASan + UBSan
#   make fuzz         build the libFuzzer harnesses of fuzz/ with clang and run each for
#                     FUZZ_SECONDS (default 60), FUZZ_JOBS (2) at a time (fuzz/README.md)
#
# CFLAGS, CPPFLAGS, NVCCFLAGS, LDFLAGS and LDLIBS are the user's, from the command
# line or the environment (make CFLAGS="-O3 -march=native"): they are added after
# the flags the build needs (RETORT_*), so they cannot drop a required one.

CC      ?= gcc
PKGS    := hdf5 openblas yaml-0.1 jansson libpcre2-8 libutf8proc ompi-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

# the user's flags (defaults only when unset)
OPT       ?= -O2
CFLAGS    ?= $(OPT) -g
NVCCFLAGS ?= -O3
LDFLAGS   ?=
LDLIBS    ?=
PREFIX    ?= /usr/local
BINDIR    ?= $(PREFIX)/bin

# what the build needs: C11, OpenMP, warnings as errors, the packages' headers
RETORT_CFLAGS := -std=c11 -fopenmp -Wall -Wextra -Werror -D_GNU_SOURCE -I. $(PKG_CFLAGS)
RETORT_LIBS   := $(PKG_LIBS) -lm -fopenmp
BUILD   ?= build
BIN     ?= retort

ifeq ($(SANITIZE),1)
  RETORT_CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer \
                    -fno-sanitize-recover=undefined
  RETORT_LIBS    += -fsanitize=address,undefined
  BUILD   := build/sanitize
  BIN     := $(BUILD)/retort
endif
# ---- CUDA: built whenever nvcc is found (CUDA=0 turns it off). The sanitizer
# build leaves it out: ASan and the CUDA runtime do not share an address space
# layout peacefully, and the GPU code is checked against its CPU twin instead.
ifeq ($(origin NVCC),undefined)
  NVCC := $(shell command -v nvcc 2>/dev/null)
endif
ifeq ($(SANITIZE),1)
  CUDA       ?= 0
  CUDA_WHY   := SANITIZE=1 builds without it
endif
ifeq ($(NVCC),)
  CUDA       ?= 0
  CUDA_WHY   ?= no nvcc on the PATH (install the CUDA toolkit, or make NVCC=/path/to/nvcc)
endif
CUDA       ?= 1
CUDA_WHY   ?= CUDA=$(CUDA)
CUDA_ARCHS ?= 80 90
ifeq ($(CUDA)$(NVCC),1)
  $(error CUDA=1 but no nvcc was found; put the CUDA toolkit's bin on the PATH or give NVCC=...)
endif
ifeq ($(CUDA),1)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  # SASS for each of CUDA_ARCHS, and PTX for the last one (list the newest last)
  # so that GPUs newer than all of them can JIT it
  CUDA_PTX  := $(lastword $(CUDA_ARCHS))
  GENCODE   := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
               -gencode arch=compute_$(CUDA_PTX),code=compute_$(CUDA_PTX)
  RETORT_NVCCFLAGS := -std=c++17 --expt-relaxed-constexpr $(GENCODE) -I. $(PKG_CFLAGS) \
               -Xcompiler -Wall,-Wextra,-Werror -D_GNU_SOURCE -DRETORT_CUDA \
               -DRETORT_CUDA_ARCHS='"$(CUDA_ARCHS)"'
  RETORT_CFLAGS += -DRETORT_CUDA
  # cublasLt is not named: libcublas pulls it in itself. libstdc++ is: the nvcc
  # objects call its runtime (static-local guards, the exception personality).
  RETORT_LIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas \
                   -lnccl -lstdc++
  CU_SRC    := $(wildcard kernels/cuda/*.cu) model/backend_cuda.cu train/dist_nccl.cu
else ifeq ($(MAKELEVEL),0)
  # said once per build (not by the recursive makes of test and quickstart)
  NO_BUILD_GOALS := help clean deps check-deps uninstall check-floors fixtures
  ifeq ($(filter $(NO_BUILD_GOALS),$(MAKECMDGOALS)),)
    $(info retort: building without the CUDA backend: $(CUDA_WHY); --device cuda will say so)
  endif
endif
CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/%.o)

ALL_CFLAGS    = $(RETORT_CFLAGS) $(CPPFLAGS) $(CFLAGS)
ALL_NVCCFLAGS = $(RETORT_NVCCFLAGS) $(CPPFLAGS) $(NVCCFLAGS)
ALL_LIBS      = $(RETORT_LIBS) $(LDLIBS)

# the tests that run the command line find the binary of this build here
export RETORT_BIN := $(abspath $(BIN))

# floors, bottom up (docs/architecture.md): util, kernels + data, model, train + eval, cli
LIB_SRC := $(wildcard util/*.c) $(wildcard kernels/cpu/*.c) $(wildcard data/*.c) \
           $(wildcard model/*.c) $(wildcard train/*.c) $(wildcard train/objectives/*.c) \
           $(wildcard eval/*.c) $(filter-out cli/main.c,$(wildcard cli/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB     := $(BUILD)/libretort.a

TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_LIBS := $(ALL_LIBS) $(shell pkg-config --libs criterion 2>/dev/null)
# plain programs run under mpirun by scripts/test_mpi.sh (not Criterion)
MPI_TEST_BINS := $(patsubst tests/mpi/%.c,$(BUILD)/tests/mpi/%,$(wildcard tests/mpi/*.c))
# the fuzz harnesses (fuzz/fuzz_NAME.c): built with this build's compiler and
# flags plus fuzz/replay_main.c, `make test` replays fuzz/corpus/NAME/ with them
# (scripts/fuzz_replay.sh); `make fuzz` builds them with clang and libFuzzer
FUZZ_NAMES  := $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
REPLAY_BINS := $(FUZZ_NAMES:%=$(BUILD)/fuzz/%_replay)

VENV    := .venv
PY      := $(VENV)/bin/python

.PHONY: all help install uninstall deps check-deps test check-floors test-gpu quickstart bench \
        bench-generate bench-stream bench-gpu fixtures clean fuzz fuzz-build

all: $(BIN)

# `make help`: every target with one line
help:
	@echo "retort — make targets (variables: CUDA=0, CUDA_ARCHS=\"80 90\", SANITIZE=1,"
	@echo "         PREFIX, DESTDIR, CC, NVCC, CFLAGS, CPPFLAGS, NVCCFLAGS, LDFLAGS, LDLIBS)"
	@echo ""
	@echo "  all (default)  build ./retort: the CPU backend, and the CUDA one when nvcc is found"
	@echo "  install        copy retort to \$$(DESTDIR)\$$(PREFIX)/bin (now $(DESTDIR)$(BINDIR))"
	@echo "  uninstall      remove it from there"
	@echo "  deps           install the Debian packages the build and tests need (as root), or"
	@echo "                 print the apt-get line"
	@echo "  test           the whole suite: floors, Criterion tests, MPI runs (installs deps first)"
	@echo "  check-floors   only the include rule between source folders (scripts/check_floors.sh)"
	@echo "  fuzz           libFuzzer harnesses of fuzz/ (clang): build, run each FUZZ_SECONDS"
	@echo "                 (60), FUZZ_JOBS (2) at a time; FUZZ=\"a b\" picks harnesses"
	@echo "  fuzz-build     only build them (build/libfuzzer/fuzz/NAME_fuzzer)"
	@echo "  quickstart     build, then sequence-level KD on the CPU: teacher, KD data, two students, eval table"
	@echo "  bench          CPU training throughput beside PyTorch, then bench-generate (creates .venv)"
	@echo "  bench-generate batched generation (GPT-2 124M and SmolLM2-135M shapes) beside transformers"
	@echo "  bench-stream   peak memory of data.stream training, 100 MB vs 5 GB file (5 GB of /tmp)"
	@echo "  test-gpu       CUDA ops vs CPU twins, GPU training curves, memcheck (needs a GPU)"
	@echo "  bench-gpu      kernel and end-to-end GPU benchmarks (needs a GPU)"
	@echo "  fixtures       regenerate the Hugging Face parity fixtures (creates .venv)"
	@echo "  clean          remove build/ and ./retort"
	@echo "  help           this list"

$(BIN): $(BUILD)/cli/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(ALL_LIBS)

# ---- install ----
install: $(BIN)
	install -d $(DESTDIR)$(BINDIR)
	install -m 755 $(BIN) $(DESTDIR)$(BINDIR)/retort

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/retort

$(LIB): $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

# every object records the headers it read (.d beside it, -MP: a removed
# header is no error), so editing any header rebuilds exactly what includes it
$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(ALL_NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -MT $@ -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/%: tests/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP $(LDFLAGS) -o $@ $< $(LIB) $(TEST_LIBS)

$(BUILD)/tests/mpi/%: tests/mpi/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP $(LDFLAGS) -o $@ $< $(LIB) $(ALL_LIBS)

$(BUILD)/fuzz/%_replay: $(BUILD)/fuzz/fuzz_%.o $(BUILD)/fuzz/replay_main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(ALL_LIBS)
# kept, so a rebuild relinks only what changed
.SECONDARY: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%.o) $(BUILD)/fuzz/replay_main.o

-include $(LIB_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(BUILD)/cli/main.d $(TEST_BINS:=.d) \
         $(MPI_TEST_BINS:=.d) $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%.d) $(BUILD)/fuzz/replay_main.d

# ---- dependencies ----
deps:
	@scripts/deps.sh install

check-deps:
	@scripts/deps.sh check || scripts/deps.sh install

# ---- tests ----
test: check-deps
	@$(MAKE) --no-print-directory $(BIN) $(TEST_BINS) $(MPI_TEST_BINS) $(REPLAY_BINS)
	@MPI_TEST_DIR=$(BUILD)/tests/mpi FUZZ_REPLAY_DIR=$(BUILD)/fuzz scripts/run_tests.sh \
		scripts/check_floors.sh $(TEST_BINS) scripts/test_mpi.sh scripts/test_dist_train.sh \
		scripts/fuzz_replay.sh

check-floors:
	@scripts/check_floors.sh

# ---- fuzzing (fuzz/README.md) ----
# The library and each harness built by clang with coverage for libFuzzer,
# ASan and UBSan, in FUZZ_BUILD (CUDA left out); scripts/fuzz.sh runs them.
FUZZ_CC      ?= clang
FUZZ_BUILD   ?= build/libfuzzer
FUZZ_CFLAGS  ?= -O1 -g -fno-omit-frame-pointer
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 2
FUZZ         ?= $(FUZZ_NAMES)

fuzz:
	@scripts/deps.sh fuzz-check || scripts/deps.sh fuzz-install
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_BIN_DIR=$(FUZZ_BUILD)/fuzz FUZZ_WORK=$(FUZZ_BUILD) scripts/fuzz.sh run \
		$(FUZZ_SECONDS) $(FUZZ_JOBS) $(FUZZ)

fuzz-build:
	@$(MAKE) --no-print-directory CC=$(FUZZ_CC) CUDA=0 SANITIZE=0 BUILD=$(FUZZ_BUILD) \
		CFLAGS="$(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link" \
		$(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz/%_fuzzer)

$(BUILD)/fuzz/%_fuzzer: $(BUILD)/fuzz/fuzz_%.o $(LIB)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer $(LDFLAGS) -o $@ $^ $(ALL_LIBS)

# ---- GPU (run these on a machine with an NVIDIA GPU) ----
test-gpu: check-deps
	@$(MAKE) --no-print-directory $(BIN) $(BUILD)/tests/test_cuda
	@scripts/test_gpu.sh

bench-gpu: check-deps
	@$(MAKE) --no-print-directory $(BIN) $(BUILD)/bench_kernels
	@experiments/bench/gpu_bench.sh

$(BUILD)/bench_kernels: experiments/bench/bench_kernels.c $(LIB)
	$(CC) $(ALL_CFLAGS) -I$(CUDA_HOME)/include $(LDFLAGS) -o $@ $< $(LIB) $(ALL_LIBS)

$(BUILD)/recompute_bytes: experiments/bench/recompute_bytes.c $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(ALL_LIBS)

$(BUILD)/decode_profile: experiments/bench/decode_profile.c $(LIB)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(ALL_LIBS)

# ---- quickstart ----
quickstart: check-deps
	@$(MAKE) --no-print-directory retort
	@scripts/quickstart.sh

# ---- python side (fixtures and benchmark peers only; the C tests never need it) ----
$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch numpy transformers safetensors h5py tiktoken tokenizers \
		sacrebleu rouge-score peft trl tensorboard

fixtures: $(PY)
	$(PY) tests/make_hf_fixtures.py tests/fixtures
	$(PY) tests/make_hf_config_fixtures.py tests/fixtures
	$(PY) tests/make_tokenizer_fixtures.py tests/fixtures
	$(PY) tests/make_tokenizer_json_fixtures.py tests/fixtures/tokjson
	$(PY) tests/make_beam_eos_fixtures.py tests/fixtures
	$(PY) tests/make_kd_fixtures.py tests/fixtures
	$(PY) tests/make_dpo_fixtures.py tests/fixtures
	$(PY) tests/make_orpo_fixtures.py tests/fixtures
	$(PY) tests/make_lora_fixtures.py tests/fixtures
	$(PY) tests/make_lora_llama_fixtures.py tests/fixtures/lora_llama
	$(PY) tests/make_metrics_fixtures.py tests/fixtures
	$(PY) tests/make_family_fixtures.py tests/fixtures/families
	$(PY) tests/make_cli_family_fixtures.py tests/fixtures/cli_families
	$(PY) tests/make_trl_dpo_fixtures.py tests/fixtures/trl_dpo
	$(PY) tests/make_chat_data_fixtures.py tests/fixtures/chat_data
	$(PY) tests/make_chat_fixtures.py tests/fixtures/chat_templates
	$(PY) tests/make_eval_data_fixtures.py tests/fixtures/eval_data

bench: check-deps $(PY)
	@$(MAKE) --no-print-directory retort
	@experiments/bench/cpu_bench.sh
	@$(MAKE) --no-print-directory bench-generate

# 256 / 128 prompts of mixed lengths, 128 new tokens each: about 25 minutes on 2 cores
bench-generate: check-deps $(PY)
	@$(MAKE) --no-print-directory retort
	@experiments/bench/batch_decode_bench.sh
	@ARCH=llama PROMPTS=128 experiments/bench/batch_decode_bench.sh

bench-stream: check-deps $(PY)
	@$(MAKE) --no-print-directory retort
	@experiments/bench/stream_rss.sh

clean:
	rm -rf build retort
