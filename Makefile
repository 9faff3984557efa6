# Thin wrapper over the CMake presets (CMakePresets.json). `make demo` and `make test` work on a
# fresh Debian machine: missing packages are installed first (scripts/install-deps.sh).
PRESET ?= default
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD_DIR := build/$(PRESET)

.PHONY: all deps configure build demo test clean

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	cmake --preset $(PRESET)

build: configure
	cmake --build --preset $(PRESET) -j $(JOBS)

demo: build
	$(BUILD_DIR)/fp4kit demo

test: build
	ctest --preset $(PRESET) -j $(JOBS)

clean:
	rm -rf build
