# jem: build the library, the command-line tool and the tests.
#   make            build/libjem.a, build/libjem.so, build/jem and its manual build/jem.1
#   make install    into $(DESTDIR)$(PREFIX) (PREFIX=/usr/local): the tool, the libraries,
#                   the headers, jem.pc, the shipped models and the manual; make uninstall
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
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
LIBDIR  ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR  ?= $(DATADIR)/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# the version (jem.h's JEM_VERSION) names the shared library: the soname
# carries MAJOR, the file MAJOR.MINOR
VERSION  := $(shell sed -n 's/^\#define JEM_VERSION "\(.*\)"/\1/p' include/jem.h)
SO_MAJOR := $(word 1,$(subst ., ,$(VERSION)))
SO_MINOR := $(word 2,$(subst ., ,$(VERSION)))
SO_NAME  := libjem.so.$(SO_MAJOR)
SO_FILE  := libjem.so.$(SO_MAJOR).$(SO_MINOR)
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
# the shared library's objects: position-independent, and only the public
# API visible (the public headers declare it inside a visibility pragma)
PIC_OBJ  := $(LIB_SRC:%.c=$(BUILD)/pic/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# the command-line tool's objects without its main (the fuzz harnesses call the commands)
CLI_CMD_SRC := $(filter-out src/cli/main.c,$(CLI_SRC))

.PHONY: all lib tests test test-san test-san-full test-mpi demo bench figures deps clean check-all fuzz fuzz-build format lint install uninstall FORCE
all: $(BUILD)/libjem.a $(BUILD)/$(SO_FILE) $(BUILD)/jem $(BUILD)/jem.1

lib: $(BUILD)/libjem.a $(BUILD)/$(SO_FILE)
tests: $(TEST_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(BUILD)/libjem.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@

# libjem.so.MAJOR.MINOR, soname libjem.so.MAJOR, and the links to it
$(BUILD)/$(SO_FILE): $(PIC_OBJ)
	$(CC) -shared -Wl,-soname,$(SO_NAME) -Wl,--no-undefined -Wl,--as-needed $(LDFLAGS) -o $@ $(PIC_OBJ) $(LDLIBS)
	ln -sf $(SO_FILE) $(BUILD)/$(SO_NAME)
	ln -sf $(SO_NAME) $(BUILD)/libjem.so

# The tool links the static library: it runs from the checkout and from any
# prefix with no loader path to set, and its kernels are not position-independent.
$(BUILD)/jem: $(CLI_OBJ) $(BUILD)/libjem.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libjem.a $(LDLIBS)

# the installed tool looks for its models in $(DATADIR)/jem when they are
# not beside it; the stamp changes (and paths.o is rebuilt) with the path
$(BUILD)/datadir.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(DATADIR)/jem' | cmp -s - $@ || echo '$(DATADIR)/jem' > $@
$(BUILD)/src/cli/paths.o: $(BUILD)/datadir.stamp
$(BUILD)/src/cli/paths.o: CPPFLAGS += -DJEM_DATADIR='"$(DATADIR)/jem"'

# the manual page, printed by the tool from the option tables behind --help
$(BUILD)/jem.1: $(BUILD)/jem
	$(BUILD)/jem --man > $@.tmp && mv $@.tmp $@

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

# jem.pc: the install folders written in terms of ${prefix} where they lie below it
pc_dir = $(patsubst $(PREFIX)%,$${prefix}%,$(1))
$(BUILD)/jem.pc: jem.pc.in $(BUILD)/datadir.stamp Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(call pc_dir,$(LIBDIR))|' \
	    -e 's|@INCLUDEDIR@|$(call pc_dir,$(INCLUDEDIR))|' -e 's|@DATADIR@|$(call pc_dir,$(DATADIR))|' \
	    -e 's|@VERSION@|$(VERSION)|' jem.pc.in > $@

PUBLIC_HEADERS := $(sort $(wildcard include/jem/*.h))
SHIPPED_MODELS := $(sort $(wildcard models/*.model models/*.safetensors))

# Into $(DESTDIR)$(PREFIX): bin/jem, lib/libjem.{a,so*}, lib/pkgconfig/jem.pc,
# include/jem.h and include/jem/, share/jem/models/, share/man/man1/jem.1.
install: all $(BUILD)/jem.pc
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(INCLUDEDIR)/jem \
	    $(DESTDIR)$(DATADIR)/jem/models $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(BUILD)/jem $(DESTDIR)$(BINDIR)/jem
	install -m 644 $(BUILD)/libjem.a $(DESTDIR)$(LIBDIR)/libjem.a
	install -m 755 $(BUILD)/$(SO_FILE) $(DESTDIR)$(LIBDIR)/$(SO_FILE)
	ln -sf $(SO_FILE) $(DESTDIR)$(LIBDIR)/$(SO_NAME)
	ln -sf $(SO_NAME) $(DESTDIR)$(LIBDIR)/libjem.so
	install -m 644 $(BUILD)/jem.pc $(DESTDIR)$(PKGCONFIGDIR)/jem.pc
	install -m 644 include/jem.h $(DESTDIR)$(INCLUDEDIR)/jem.h
	install -m 644 $(PUBLIC_HEADERS) $(DESTDIR)$(INCLUDEDIR)/jem/
	install -m 644 $(SHIPPED_MODELS) $(DESTDIR)$(DATADIR)/jem/models/
	install -m 644 $(BUILD)/jem.1 $(DESTDIR)$(MANDIR)/man1/jem.1
	@# the loader's cache learns the new library (a real install as root)
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/jem $(DESTDIR)$(LIBDIR)/libjem.a $(DESTDIR)$(LIBDIR)/$(SO_FILE) \
	    $(DESTDIR)$(LIBDIR)/$(SO_NAME) $(DESTDIR)$(LIBDIR)/libjem.so $(DESTDIR)$(PKGCONFIGDIR)/jem.pc \
	    $(DESTDIR)$(INCLUDEDIR)/jem.h $(DESTDIR)$(MANDIR)/man1/jem.1
	rm -f $(PUBLIC_HEADERS:include/jem/%=$(DESTDIR)$(INCLUDEDIR)/jem/%)
	rm -f $(SHIPPED_MODELS:models/%=$(DESTDIR)$(DATADIR)/jem/models/%)
	@# the folders jem made, when nothing else is left in them
	@rmdir $(DESTDIR)$(INCLUDEDIR)/jem $(DESTDIR)$(DATADIR)/jem/models $(DESTDIR)$(DATADIR)/jem 2>/dev/null || true

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

-include $(LIB_OBJ:.o=.d) $(PIC_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d) $(FUZZ_LIB_OBJ:.o=.d)
