# Perpetuum. `make demo` and `make test` do all their own set-up on a fresh Debian 12.
# Targets: deps build test demo bench bench-quick install clean (see README.md).

SHELL := /bin/bash
SWIFT ?= swift
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(DESTDIR)$(PREFIX)/bin

# Code generation baseline. The sparse training loop needs a named target CPU for FMA/SIMD
# (without it, each fused multiply-add becomes a libm call). We build for the machine we
# build on: haswell (AVX2+FMA) where the CPU has it, else generic x86-64. A binary built
# with haswell dies with SIGILL on a CPU without AVX2: set TARGET_CPU=x86-64 to build
# portable binaries for older machines.
TARGET_CPU ?= $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && echo haswell || echo x86-64)
CPU_FLAGS := $(if $(filter x86-64,$(TARGET_CPU)),,-Xswiftc -target-cpu -Xswiftc $(TARGET_CPU))
RELEASE := -c release $(CPU_FLAGS)
# Tests build in their own folder (release + -enable-testing for @testable imports), so the
# installed binaries are never built with testing hooks.
TEST_FLAGS := -c release $(CPU_FLAGS) -Xswiftc -enable-testing --scratch-path .build-test
BIN := $(shell $(SWIFT) build $(RELEASE) --show-bin-path 2>/dev/null)

APT_PACKAGES := libopenblas-dev libzstd-dev pkg-config zstd
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps build test demo bench bench-quick install clean

all: build

# Installs the Debian packages that are missing (apt's configured sources; no other host).
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "make deps: no swift toolchain on PATH (Swift 6 needed)"; exit 1; }

build: deps
	$(SWIFT) build $(RELEASE)

test: deps
	$(SWIFT) build $(TEST_FLAGS)
	$(SWIFT) test $(TEST_FLAGS) --disable-swift-testing

demo: build
	PP_BIN="$(BIN)" demo/run.sh

bench: build
	PP_BIN="$(BIN)" bench/run.sh

bench-quick: build
	PP_BIN="$(BIN)" BENCH_QUICK=1 bench/run.sh

install: build
	install -d $(BINDIR)
	for t in pp-ingest pp-train pp-eval pp-select; do install -m 0755 "$(BIN)/$$t" $(BINDIR)/$$t; done

clean:
	rm -rf .build .build-test demo/root bench/work
