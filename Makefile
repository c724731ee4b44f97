# jem: build the library, the command-line tool and the tests.
#   make            build/libjem.a and build/jem
#   make test       install dependencies if missing, build, run every test
#   make demo       install dependencies if missing, run the main job
#   make bench      performance benchmarks (ratios measured side by side)
#   make figures    the evaluation report of the shipped models, and its tables
#   make DEBUG=1    -O0, full debug info
#   make SANITIZE=1 AddressSanitizer + UndefinedBehaviorSanitizer (build-san/)
#   make fuzz       libFuzzer on every parser of outside input (clang)
#   make MPI=1      the same jem with data-parallel MPI (build-mpi/)
#   make test-mpi   install OpenMPI if missing, run the MPI tests (2 ranks; 2 and 4 hosts in namespaces)
#   make format     clang-format every C file of src/, include/, tests/ in place
#   make lint       formatting check, warnings-as-errors build (build-lint/);
#                   CPPCHECK=1 adds cppcheck; not part of `make test`

CC      ?= gcc
BUILD   ?= build
CSTD    := -std=c11
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wvla -Wundef
OPT     := -O2
ifeq ($(DEBUG),1)
  OPT   := -O0 -g3
  BUILD := build-debug
endif
ifeq ($(SANITIZE),1)
  OPT   += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDSAN := -fsanitize=address,undefined
  BUILD := build-san
endif
ifeq ($(WERROR),1)
  WARN  += -Werror
endif
ifeq ($(MPI),1)
  CC    := mpicc
  BUILD := $(BUILD)-mpi
  CPPFLAGS += -DJEM_MPI
endif
CPPFLAGS += -Iinclude -Isrc -D_GNU_SOURCE -MMD -MP
CFLAGS   += $(CSTD) $(OPT) -g $(WARN) -fopenmp
LDLIBS   += -lopenblas -lpng -lz -lm
LDFLAGS  += -fopenmp $(LDSAN)

LIB_SRC  := $(shell find src -name '*.c' ! -path 'src/cli/*' | sort)
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# the command-line tool's objects without its main (the fuzz harnesses call the commands)
CLI_CMD_SRC := $(filter-out src/cli/main.c,$(CLI_SRC))

.PHONY: all lib tests test test-san test-san-full test-mpi demo bench figures deps clean check-all fuzz fuzz-build format lint
all: $(BUILD)/libjem.a $(BUILD)/jem

lib: $(BUILD)/libjem.a
tests: $(TEST_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libjem.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/jem: $(CLI_OBJ) $(BUILD)/libjem.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libjem.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libjem.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MF $@.d -o $@ $< $(BUILD)/libjem.a $(LDFLAGS) $(LDLIBS)

# the fuzz replay test runs the harnesses, two of which run the commands' checks
$(BUILD)/tests/test_fuzz: tests/test_fuzz.c tests/test.h $(BUILD)/libjem.a $(CLI_CMD_SRC:%.c=$(BUILD)/%.o)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MF $@.d -o $@ $< $(CLI_CMD_SRC:%.c=$(BUILD)/%.o) $(BUILD)/libjem.a $(LDFLAGS) $(LDLIBS)

# libFuzzer harnesses (clang): build-fuzz/fuzz_<target>; `make fuzz` runs
# each for FUZZ_SECONDS from the seed corpora in tests/fuzz/corpus.
FUZZ_TARGETS := idx cifar png pngdir ckpt arch cli cmd json spec compose
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build-fuzz
FUZZ_FLAGS   := -O1 -g -march=native -Wno-pass-failed -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ_BUILD)/%.o) $(CLI_CMD_SRC:%.c=$(FUZZ_BUILD)/%.o)

$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) $(CSTD) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -fopenmp -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_LIB_OBJ)
	clang $(CPPFLAGS) $(CSTD) $(FUZZ_FLAGS) -fsanitize=fuzzer -fopenmp -o $@ $< $(FUZZ_LIB_OBJ) $(LDLIBS)

fuzz-build: deps
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_TARGETS)

deps:
	@scripts/deps.sh

# The test suite: unit tests, then command-line tests; one summary line.
test: deps
	@$(MAKE) --no-print-directory all tests
	@scripts/run_tests.sh $(BUILD)

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
test-san: deps
	@$(MAKE) --no-print-directory SANITIZE=1 all tests
	@JEM_TEST_QUICK=1 JEM_TEST_UNIT_ONLY=1 scripts/run_tests.sh build-san

# MPI: data-parallel training and evaluation on 2 ranks of this machine, then
# across 2 and 4 hosts made of network namespaces over TCP (needs root).
test-mpi:
	@JEM_DEPS_EXTRA="libopenmpi-dev openmpi-bin" scripts/deps.sh
	@$(MAKE) --no-print-directory MPI=1 all
	@JEM=build-mpi/jem bash tests/mpi_train.sh; a=$$?; \
	 JEM=build-mpi/jem bash tests/mpi_hosts.sh; b=$$?; \
	 [ $$a -eq 0 ] && [ $$b -eq 0 ]

# The whole suite (unit and command-line tests, full sizes) under the sanitizers.
test-san-full: deps
	@$(MAKE) --no-print-directory SANITIZE=1 all tests
	@scripts/run_tests.sh build-san

check-all: test test-san-full

demo: deps
	@$(MAKE) --no-print-directory all
	@scripts/demo.sh $(BUILD)

bench: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench.sh $(BUILD)

# the README's evaluation tables from the shipped models (with screenshots)
figures: deps
	@$(MAKE) --no-print-directory all
	@scripts/figures.sh $(BUILD)

# The layout of the C sources (.clang-format): `make format` rewrites them,
# `make lint` checks them and builds with warnings as errors.
FORMAT_FILES = $(shell find src include tests -name '*.[ch]' | sort)

format:
	@JEM_DEPS_EXTRA=clang-format scripts/deps.sh
	clang-format -i $(FORMAT_FILES)

lint: deps
	@JEM_DEPS_EXTRA="clang-format$(if $(filter-out 0,$(CPPCHECK)), cppcheck)" scripts/deps.sh
	@CPPCHECK=$(CPPCHECK) scripts/lint.sh $(FORMAT_FILES)

clean:
	rm -rf build build-debug build-san build-fuzz build-mpi build-lint

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d) $(FUZZ_LIB_OBJ:.o=.d)
