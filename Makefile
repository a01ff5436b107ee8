# keel — the two commands a user needs are `make run` and `make test`.
BUILD      ?= build
JOBS       ?= $(shell nproc)
KEEL_WERROR ?= OFF
CMAKE_ARGS ?=
SEEDS      ?= 5000
# Debian's Python, where scripts/deps.sh installs the test clients (python3-redis): not a
# python3 that PATH may find first (pyenv, a venv).
PYTHON     ?= /usr/bin/python3
export CCACHE_DIR ?= $(HOME)/.cache/ccache
# Relative paths in the cache key: a clone in another directory still hits the cache. With
# debug info ccache also hashes the working directory unless told not to (the objects' debug
# info then names the directory of the build that filled the cache: harmless here).
export CCACHE_BASEDIR ?= $(CURDIR)
export CCACHE_NOHASHDIR ?= 1

.PHONY: all deps build run test fault bench fuzz soak asan format clean install

all: build

deps:
	@scripts/deps.sh test

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DKEEL_WERROR=$(KEEL_WERROR) $(CMAKE_ARGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/tools/keel/keel serve

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

# Fault tests with real processes (tests/fault): partitions of 5 s and 20 s through a
# blackholing proxy, a network-namespace cut checked for linearizability, heal -> rejoin
# figures printed; then a 4th node joining under load, three times. `make test` runs a short
# subset.
FAULT_PARTITIONS ?= 5,20
fault: build
	KEEL_BIN=$(CURDIR)/$(BUILD)/tools/keel/keel KEEL_FAULT_PARTITIONS=$(FAULT_PARTITIONS) PYTHONDONTWRITEBYTECODE=1 \
	  $(PYTHON) -m unittest discover -v -s tests/fault -p 'test_*.py'
	cd tests/integration && for i in 1 2 3; do KEEL_BIN=$(CURDIR)/$(BUILD)/tools/keel/keel PYTHONDONTWRITEBYTECODE=1 \
	  $(PYTHON) -m unittest -v test_dht.RebalanceTest || exit 1; done

bench:
	@scripts/deps.sh bench
	$(MAKE) build
	bench/run.sh $(BUILD)

soak: build
	KEEL_SIM_SEEDS=$(SEEDS) $(BUILD)/tests/sim/keel_sim --seeds $(SEEDS)
	$(BUILD)/tests/sim/keel_repl_sim --seeds $$(( $(SEEDS) * 4 )) --first 100000

fuzz:
	@scripts/deps.sh test
	scripts/fuzz.sh $(BUILD)-fuzz $${FUZZ_SECONDS:-120}

asan:
	@scripts/deps.sh test
	cmake -S . -B $(BUILD)-asan -G Ninja -DKEEL_SANITIZE=ON
	cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ctest --output-on-failure -j $(JOBS)

format:
	find src sdk include tools tests bench -name '*.cpp' -o -name '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(BUILD)-fuzz $(BUILD)-asan

# Installs the C++ SDK (headers, static libraries, CMake package keel, pkg-config files).
install: build
	cmake --install $(BUILD) --prefix $${PREFIX:-/usr/local}
