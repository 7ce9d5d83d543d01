# The two commands of the README:
#   make demo   install missing packages, build, run the local demo
#   make test   install missing packages, build with ASan+UBSan and -Werror, run every test
# Other targets: build (release-ish build in build/), fuzz (libFuzzer, clang), bench, clean.
BUILD      ?= build
TEST_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all build demo test fuzz bench clean deps-build deps-test

all: build

deps-build:
	@scripts/deps.sh build
deps-test:
	@scripts/deps.sh test

build: deps-build
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOAL_WERROR=ON >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	scripts/demo.sh $(BUILD)

test: deps-test
	cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DSHOAL_SANITIZE=ON -DSHOAL_WERROR=ON >/dev/null
	cmake --build $(TEST_BUILD) -j$(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure $(CTEST_ARGS)

fuzz: deps-test
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOAL_FUZZ=ON -DSHOAL_TESTS=OFF >/dev/null
	cmake --build $(FUZZ_BUILD) -j$(JOBS)
	scripts/fuzz.sh $(FUZZ_BUILD)

bench: build
	scripts/bench.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD)
