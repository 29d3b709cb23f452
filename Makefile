# crlib — the two quick-start commands are `make demo` and `make test`.
# Every target installs the Debian packages it needs, configures build/ with
# meson if it is not configured yet, and builds.

BUILD    ?= build
FUZZ_BUILD ?= build-fuzz
SANITIZE_BUILD ?= build-sanitize
FUZZ_SECONDS ?= 60
MESON_OPTS ?=
# CI builds with warnings as errors.
ifneq ($(CI),)
MESON_OPTS += -Dwerror=true
endif

# redis-server: the real server tests/task/server_test.cc checkpoints;
# nftables: the packet filter that keeps TCP connections from being reset
# between a dump with --tcp-established and its restore.
DEB_PACKAGES := meson ninja-build g++ pkg-config python3 \
	libabsl-dev libzstd-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev \
	redis-server nftables
FUZZ_PACKAGES := clang libclang-rt-14-dev

SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: all deps build test test-sanitize demo bench fuzz clean

all: build

# Installs only what is missing, so a configured machine pays one dpkg-query.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BUILD)/build.ninja: | deps
	meson setup $(BUILD) --buildtype=debugoptimized $(MESON_OPTS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

test: build
	meson test -C $(BUILD) --print-errorlogs --num-processes 2; \
	    status=$$?; python3 tools/test_summary.py $(BUILD)/meson-logs/testlog.json || status=1; exit $$status

# The whole suite with AddressSanitizer and UBSan in a build directory of
# its own: the library, crlib and the workloads it checkpoints are all
# instrumented, so it also proves that ASan processes (terabytes of
# MAP_NORESERVE shadow) dump and restore. -Db_lundef=false: the shared
# library leaves the sanitizer symbols to the runtime. meson test sets
# ASAN_OPTIONS/UBSAN_OPTIONS to halt on the first report. Warnings are the
# normal build's job (GCC warns differently with sanitizers): no -Werror.
test-sanitize: deps
	[ -f $(SANITIZE_BUILD)/build.ninja ] || meson setup $(SANITIZE_BUILD) \
	    --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false
	ninja -C $(SANITIZE_BUILD)
	meson test -C $(SANITIZE_BUILD) --print-errorlogs --num-processes 2 --timeout-multiplier 2 \
	    --no-suite slow; \
	    status=$$?; python3 tools/test_summary.py $(SANITIZE_BUILD)/meson-logs/testlog.json || status=1; exit $$status

demo: build
	$(BUILD)/tools/crlib/crlib demo

bench: build
	ninja -C $(BUILD) benchmarks
	@for b in $(BUILD)/benchmarks/*_benchmark; do echo "== $$b"; $$b; done

# libFuzzer needs clang; it gets a build directory of its own.
fuzz: deps
	@missing=$$(for p in $(FUZZ_PACKAGES); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; fi
	[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang CXX=clang++ meson setup $(FUZZ_BUILD) \
	    --buildtype=debugoptimized -Dfuzz=true -Db_lundef=false
	ninja -C $(FUZZ_BUILD) tests/fuzz/image_reader_fuzzer
	mkdir -p $(FUZZ_BUILD)/fuzz-corpus tests/fuzz/artifacts
	$(FUZZ_BUILD)/tests/fuzz/image_reader_fuzzer -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=tests/fuzz/artifacts/ -rss_limit_mb=2048 \
	    $(FUZZ_BUILD)/fuzz-corpus tests/fuzz/corpus

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) $(SANITIZE_BUILD)
