# The two commands of the README:
#   make demo   install missing packages, build, run the local demo
#   make test   install missing packages, build with ASan+UBSan and -Werror, run every test
# Other targets: build (release-ish build in build/), deb (the Debian package, linted, in
# build-deb/; DEB_VERSION=V for another version), fuzz (libFuzzer, clang), bench, clean.
BUILD      ?= build
TEST_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
DEB_BUILD  ?= build-deb
DEB_VERSION ?=
JOBS       ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all build deb demo test fuzz bench clean deps-build deps-test deps-deb

all: build

deps-build:
	@scripts/deps.sh build
deps-test:
	@scripts/deps.sh test
deps-deb:
	@scripts/deps.sh deb

build: deps-build
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHOAL_WERROR=ON >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

# The .deb: optimised, hardened (CMakeLists.txt), tests not built; then lintian, which fails
# the target on any error or warning (the README lists the tags it still reports, and why).
deb: deps-deb
	cmake -S . -B $(DEB_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=/usr \
		-DSHOAL_TESTS=OFF -DSHOAL_SANITIZE=OFF -DSHOAL_HARDEN=ON -DSHOAL_WERROR=ON \
		-DSHOAL_DEB_VERSION=$(DEB_VERSION) >/dev/null
	cmake --build $(DEB_BUILD) -j$(JOBS)
	rm -f $(DEB_BUILD)/*.deb $(DEB_BUILD)/*.ddeb
	cd $(DEB_BUILD) && cpack -G DEB
	lintian --fail-on error,warning --display-info $(DEB_BUILD)/*.deb $(DEB_BUILD)/*.ddeb
	@ls -1 $(DEB_BUILD)/*.deb $(DEB_BUILD)/*.ddeb

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
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD) $(DEB_BUILD)
