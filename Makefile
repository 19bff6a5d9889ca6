# The two commands of the quick start are `make run` and `make test`; both set everything up.
#   make run    install missing Debian packages, build, train the default network on MNIST
#   make test   install missing Debian packages, build, run the whole test suite (CTest), on the
#               release build and on a portable (-DNANOMLP_NATIVE=OFF) one
#   make build  build only        make bench  run the benchmarks      make debug  ASan+UBSan build
#   make tsan   ThreadSanitizer build, then the tests of the threaded code under it
#   make bench-best  train the `best` recipe on MNIST and Fashion-MNIST and check its figures
#   make fuzz   build the libFuzzer targets (clang, ASan+UBSan) and fuzz each for FUZZ_SECONDS
# Data: DATA=DIR (or $NANOMLP_DATA); default ../shared/data when it exists, else ./data.

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
DATA ?= $(or $(NANOMLP_DATA),$(if $(wildcard ../shared/data/mnist),../shared/data,data))
RUN_ARGS ?=
# Seconds per fuzz target: `make fuzz` (a real session) and the short regression run of
# `make test`.
FUZZ_SECONDS ?= 60
TEST_FUZZ_SECONDS ?= 15

.PHONY: all deps deps-test deps-bench configure build run test bench bench-best debug tsan fuzz format clean

all: build

deps:
	@bash scripts/setup-deps.sh build

deps-test:
	@bash scripts/setup-deps.sh test

deps-bench:
	@bash scripts/setup-deps.sh bench

configure: deps
	@cmake --preset release >/dev/null

build: configure
	cmake --build --preset release -j $(JOBS)

# make run builds the library and the binary only, not the tests and benchmarks.
run: configure
	cmake --build --preset release -j $(JOBS) --target nanomlp
	@test -e "$(DATA)/mnist/train-images-idx3-ubyte.gz" || test -e "$(DATA)/mnist/train-images-idx3-ubyte" \
	  || ./build/nanomlp download mnist --data "$(DATA)"
	./build/nanomlp train --data "$(DATA)" $(RUN_ARGS)

# The suite runs twice: on the release build, and on a portable one (no -march=native) so that
# the fallbacks of the AVX-512 kernels stay correct on every machine. Then every fuzz target
# replays its seeds (the regressions among them) and fuzzes for TEST_FUZZ_SECONDS.
test: deps-test configure
	cmake --build --preset release -j $(JOBS)
	NANOMLP_DATA="$(abspath $(DATA))" ctest --preset release -j $(JOBS)
	cmake --preset portable >/dev/null
	cmake --build --preset portable -j $(JOBS)
	NANOMLP_DATA="$(abspath $(DATA))" ctest --preset portable -j $(JOBS)
	FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) FUZZ_JOBS=$(JOBS) bash fuzz/run.sh

# libFuzzer targets of fuzz/ (clang++, ASan and UBSan): each fuzzed for FUZZ_SECONDS on a copy
# of its corpus in build-fuzz/; fails if any finds a crash (see fuzz/run.sh).
fuzz: deps-test
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(JOBS) bash fuzz/run.sh

bench: deps-bench build
	NANOMLP_DATA="$(abspath $(DATA))" bash bench/run.sh

bench-best: build
	NANOMLP_DATA="$(abspath $(DATA))" bash bench/best_preset.sh

debug: deps
	cmake --preset debug >/dev/null
	cmake --build --preset debug -j $(JOBS)

# The thread pool, the kernels it splits and the split step, under ThreadSanitizer.
TSAN_TESTS = test_kernels test_sparse test_split_step test_trainer
tsan: deps-test
	cmake --preset tsan >/dev/null
	cmake --build --preset tsan -j $(JOBS) --target $(TSAN_TESTS)
	set -e; for t in $(TSAN_TESTS); do NANOMLP_DATA="$(abspath $(DATA))" build-tsan/tests/$$t; done

format:
	clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf build build-debug build-tsan build-portable build-fuzz
