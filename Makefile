# retort — build, dependencies, tests, benchmarks, quickstart.
#
#   make              build ./retort (CPU backend; the CUDA backend too when nvcc is found;
#                     CUDA_ARCHS="80 90" picks the GPU targets, CUDA=0 leaves it out)
#   make deps         install the Debian packages the build needs (root), or print the line
#   make test         run the whole Criterion suite (installs deps first when missing)
#   make quickstart   build, make a dataset from a public-domain book, train, sample
#   make bench        CPU training throughput beside PyTorch, same model and threads
#   make test-gpu     CUDA ops vs CPU twins, CPU-vs-GPU training curves, determinism, memcheck
#   make bench-gpu    attention vs PyTorch SDPA, end to end vs llm.c and PyTorch (on a GPU)
#   make fixtures     regenerate the Hugging Face parity fixtures (needs the venv)
#   make SANITIZE=1 test   the suite under ASan + UBSan

CC      ?= gcc
PKGS    := hdf5 openblas yaml-0.1 jansson libpcre2-8 ompi-c
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

OPT     ?= -O2
CFLAGS  := -std=c11 $(OPT) -g -fopenmp -Wall -Wextra -Werror -D_GNU_SOURCE -I. $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lm -fopenmp
BUILD   := build
BIN     := retort

ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDLIBS  += -fsanitize=address,undefined
  BUILD   := build/sanitize
  BIN     := $(BUILD)/retort
endif
# ---- CUDA: built whenever nvcc is found (CUDA=0 turns it off). The sanitizer
# build leaves it out: ASan and the CUDA runtime do not share an address space
# layout peacefully, and the GPU code is checked against its CPU twin instead.
NVCC       ?= $(shell command -v nvcc 2>/dev/null)
ifeq ($(SANITIZE),1)
  CUDA     ?= 0
endif
ifeq ($(NVCC),)
  CUDA     ?= 0
endif
CUDA       ?= 1
CUDA_ARCHS ?= 80 90
ifeq ($(CUDA),1)
  CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  # SASS for each of CUDA_ARCHS, and PTX for the last one (list the newest last)
  # so that GPUs newer than all of them can JIT it
  CUDA_PTX  := $(lastword $(CUDA_ARCHS))
  GENCODE   := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
               -gencode arch=compute_$(CUDA_PTX),code=compute_$(CUDA_PTX)
  NVCCFLAGS := -std=c++17 -O3 --expt-relaxed-constexpr $(GENCODE) -I. $(PKG_CFLAGS) \
               -Xcompiler -Wall,-Wextra,-Werror -D_GNU_SOURCE -DRETORT_CUDA \
               -DRETORT_CUDA_ARCHS='"$(CUDA_ARCHS)"'
  CFLAGS    += -DRETORT_CUDA
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt \
               -lnccl -lstdc++
  CU_SRC    := $(wildcard kernels/cuda/*.cu) model/backend_cuda.cu train/dist_nccl.cu
endif
CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/%.o)

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
TEST_LIBS := $(LDLIBS) $(shell pkg-config --libs criterion 2>/dev/null)
# plain programs run under mpirun by scripts/test_mpi.sh (not Criterion)
MPI_TEST_BINS := $(patsubst tests/mpi/%.c,$(BUILD)/tests/mpi/%,$(wildcard tests/mpi/*.c))

VENV    := .venv
PY      := $(VENV)/bin/python

.PHONY: all deps test test-gpu quickstart bench bench-gpu fixtures clean check-deps

all: $(BIN)

$(BIN): $(BUILD)/cli/main.o $(LIB)
	$(CC) -o $@ $^ $(LDLIBS)

$(LIB): $(LIB_OBJ) $(CU_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.cu $(wildcard kernels/cuda/*.cuh kernels/cuda/*.h)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tests/%: tests/%.c $(LIB) tests/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(TEST_LIBS)

$(BUILD)/tests/mpi/%: tests/mpi/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

-include $(LIB_OBJ:.o=.d) $(BUILD)/cli/main.d

# ---- dependencies ----
deps:
	@scripts/deps.sh install

check-deps:
	@scripts/deps.sh check || scripts/deps.sh install

# ---- tests ----
test: check-deps
	@$(MAKE) --no-print-directory $(BIN) $(TEST_BINS) $(MPI_TEST_BINS)
	@MPI_TEST_DIR=$(BUILD)/tests/mpi scripts/run_tests.sh scripts/check_floors.sh $(TEST_BINS) scripts/test_mpi.sh \
		scripts/test_dist_train.sh

# ---- GPU (run these on a machine with an NVIDIA GPU) ----
test-gpu: check-deps
	@$(MAKE) --no-print-directory $(BIN) $(BUILD)/tests/test_cuda
	@scripts/test_gpu.sh

bench-gpu: check-deps
	@$(MAKE) --no-print-directory $(BIN) $(BUILD)/bench_kernels
	@experiments/bench/gpu_bench.sh

$(BUILD)/bench_kernels: experiments/bench/bench_kernels.c $(LIB)
	$(CC) $(CFLAGS) -I$(CUDA_HOME)/include -o $@ $< $(LIB) $(LDLIBS)

# ---- quickstart ----
quickstart: check-deps
	@$(MAKE) --no-print-directory retort
	@scripts/quickstart.sh

# ---- python side (fixtures and benchmark peers only; the C tests never need it) ----
$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q torch numpy transformers safetensors h5py tiktoken tokenizers \
		sacrebleu rouge-score peft

fixtures: $(PY)
	$(PY) tests/make_hf_fixtures.py tests/fixtures
	$(PY) tests/make_tokenizer_fixtures.py tests/fixtures
	$(PY) tests/make_beam_eos_fixtures.py tests/fixtures
	$(PY) tests/make_kd_fixtures.py tests/fixtures
	$(PY) tests/make_dpo_fixtures.py tests/fixtures
	$(PY) tests/make_lora_fixtures.py tests/fixtures
	$(PY) tests/make_metrics_fixtures.py tests/fixtures

bench: check-deps $(PY)
	@$(MAKE) --no-print-directory retort
	@experiments/bench/cpu_bench.sh

clean:
	rm -rf build retort
