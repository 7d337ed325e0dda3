# Tidings - plain Makefile with pkg-config. Objects go under build/.
#
#   make            release binaries: build/tidings-gateway, build/tidingsctl
#   make run        dependencies, build, private Redis under var/, one gateway
#   make test       dependencies, build, unit + fuzz-corpus + integration tests under prove
#   make fuzz       libFuzzer drivers for FUZZ_SECONDS each
#   make fmt-check  clang-format; make lint: clang-tidy + cppcheck

PKGS      := libevent hiredis libcjson libpq openssl
CC        ?= cc
CLANG     ?= clang
WARN      := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wno-unused-parameter
ifeq ($(CI),true)
WARN      += -Werror
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhiredis -lm
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -g $(WARN) -I. $(PKG_CFLAGS) -MMD -MP
CFLAGS    ?= -O2 -fstack-protector-strong -D_FORTIFY_SOURCE=3
SAN       := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

COMMON_SRC  := $(wildcard common/*.c)
GATEWAY_SRC := $(filter-out gateway/main.c,$(wildcard gateway/*.c))
WORKER_SRC  := $(wildcard worker/*.c)
CTL_SRC     := $(wildcard ctl/*.c)
LIB_SRC     := $(COMMON_SRC) $(GATEWAY_SRC)

OBJ      := build/obj
ASAN     := build/asan
LIB_OBJ  := $(LIB_SRC:%.c=$(OBJ)/%.o)
LIB_AOBJ := $(LIB_SRC:%.c=$(ASAN)/%.o)

UNIT_SRC  := $(wildcard tests/unit/*/*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=build/tests/unit/%)
FUZZ_SRC  := $(wildcard tests/fuzz/*.c)
FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
INTEG     := $(sort $(wildcard tests/integ/*.t))

BINS := build/tidings-gateway build/tidings-worker build/tidingsctl
ASAN_BINS := $(ASAN)/tidings-gateway $(ASAN)/tidings-worker $(ASAN)/tidingsctl

.PHONY: all deps run test unit test-build fuzz fuzz-build bench fmt fmt-check lint clean
all: $(BINS)

deps:
	@scripts/install-deps

# Programs link against an archive of the modules so each pulls in only
# what it uses (tidingsctl needs the codecs, not the gateway's loop).
$(OBJ)/libtidings.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
build/tidings-gateway: $(OBJ)/gateway/main.o $(OBJ)/libtidings.a
	$(CC) -o $@ $^ $(PKG_LIBS)
build/tidingsctl: $(CTL_SRC:%.c=$(OBJ)/%.o) $(OBJ)/libtidings.a
	$(CC) -o $@ $^ $(PKG_LIBS)
build/tidings-worker: $(WORKER_SRC:%.c=$(OBJ)/%.o) $(OBJ)/libtidings.a
	$(CC) -o $@ $^ $(PKG_LIBS)
# The load generator (tests/bench/): Socket.IO clients and an emit producer
# that measure a server, any server keeping the contract of tests/bench/peers/.
BENCH_SRC := $(wildcard tests/bench/*.c)
build/tidings-loadgen: $(BENCH_SRC:%.c=$(OBJ)/%.o) $(OBJ)/libtidings.a
	$(CC) -o $@ $^ $(PKG_LIBS)
.PHONY: bench-build
bench-build: build/tidings-loadgen
$(ASAN)/tidings-worker: $(WORKER_SRC:%.c=$(ASAN)/%.o) $(ASAN)/libtidings.a
	$(CC) $(SAN) -o $@ $^ $(PKG_LIBS)
$(ASAN)/tidings-gateway: $(ASAN)/gateway/main.o $(ASAN)/libtidings.a
	$(CC) $(SAN) -o $@ $^ $(PKG_LIBS)
$(ASAN)/tidingsctl: $(CTL_SRC:%.c=$(ASAN)/%.o) $(ASAN)/libtidings.a
	$(CC) $(SAN) -o $@ $^ $(PKG_LIBS)

# The migrations in sql/ are compiled into tidingsctl: scripts/embed-sql
# turns them into a C table that ctl/migrate.c includes.
MIGRATIONS := $(sort $(wildcard sql/[0-9][0-9][0-9][0-9]_*.sql))
build/gen/migrations.inc: scripts/embed-sql $(MIGRATIONS)
	@mkdir -p $(dir $@)
	scripts/embed-sql $(MIGRATIONS) > $@.tmp && mv $@.tmp $@
$(OBJ)/ctl/migrate.o $(ASAN)/ctl/migrate.o: build/gen/migrations.inc

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) -c -o $@ $<
$(ASAN)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) -c -o $@ $<

# Unit tests: one binary per tested file, built with ASan+UBSan, printing TAP.
# They link against an archive so each pulls in only the modules it uses.
$(ASAN)/libtidings.a: $(LIB_AOBJ)
	rm -f $@ && ar rcs $@ $^
build/tests/unit/%: tests/unit/%.c $(ASAN)/libtidings.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(SAN) -Itests/unit -o $@ $< $(ASAN)/libtidings.a $(PKG_LIBS)

# Fuzz drivers: libFuzzer + ASan under clang. The tree is compiled again with
# coverage instrumentation so the fuzzer sees inside the codecs.
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -I. $(PKG_CFLAGS)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build/fuzzobj/%.o)
build/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_FLAGS:-fsanitize=fuzzer,%=-fsanitize=fuzzer-no-link,%) -c -o $@ $<
build/fuzzobj/libtidings.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^
build/fuzz/%: tests/fuzz/%.c build/fuzzobj/libtidings.a
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_FLAGS) -o $@ $^ $(PKG_LIBS)

test-build: $(BINS) $(ASAN_BINS) $(UNIT_BINS) $(FUZZ_BINS) build/tidings-loadgen

unit: $(UNIT_BINS) $(FUZZ_BINS)
	prove -e '' $(UNIT_BINS) tests/fuzz/replay.t

test: deps
	@$(MAKE) --no-print-directory test-build
	prove -e '' $(UNIT_BINS) tests/fuzz/replay.t $(INTEG)

FUZZ_SECONDS ?= 60
fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do n=$${f##*/}; mkdir -p build/fuzz-corpus/$$n; \
	  echo "fuzz $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build/fuzz-corpus/$$n tests/fuzz/corpus/$$n || exit 1; done

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run

# Tidings against socket.io and python-socketio, same scenarios, one run
# (scripts/bench; docs/performance.md). BENCH_QUICK=1 for a short smoke run.
bench: deps
	@$(MAKE) --no-print-directory all build/tidings-loadgen
	@scripts/bench

FMT_FILES = $(wildcard common/*.[ch] gateway/*.[ch] worker/*.[ch] ctl/*.[ch] tests/unit/*/*.c tests/unit/*.h tests/fuzz/*.[ch] tests/bench/*.[ch])
fmt:
	clang-format -i $(FMT_FILES)
fmt-check:
	clang-format --dry-run -Werror $(FMT_FILES)
lint: build/gen/migrations.inc
	clang-tidy -quiet --warnings-as-errors="*" $(COMMON_SRC) $(GATEWAY_SRC) $(WORKER_SRC) $(CTL_SRC) gateway/main.c $(BENCH_SRC) -- $(BASE_CFLAGS:-MMD=) 2>/dev/null
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr -I. common gateway worker ctl tests/bench

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
