# Perpetuum. `make demo` and `make test` do all their own set-up on a fresh Debian 12.
# Targets: deps build test report-test demo bench bench-quick bench-accuracy drift drift-quick install clean (see README.md).

SHELL := /bin/bash
SWIFT ?= swift
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(DESTDIR)$(PREFIX)/bin

# Code generation baseline (issue 20). The sparse training loop needs a named target CPU for
# FMA/SIMD: without one, each fused multiply-add becomes a libm call and training is ~3.5x
# slower. Package.swift picks it (so a plain `swift build -c release` gets it too) from
# PP_TARGET_CPU, which TARGET_CPU sets: unset = for the machine we build on (haswell where
# /proc/cpuinfo has AVX2+FMA, else generic x86-64); TARGET_CPU=x86-64 = portable binaries for
# older machines (a haswell binary dies with SIGILL on a CPU without AVX2); any other LLVM
# CPU name (znver3, native, ...) is passed as -target-cpu. `pp-train --version` says what a
# binary was built for. All builds share .build/release (BIN), so switching TARGET_CPU rebuilds.
TARGET_CPU ?= $(PP_TARGET_CPU)
export PP_TARGET_CPU := $(TARGET_CPU)
# The installed binaries carry the Swift runtime and Foundation (no toolchain on the target;
# ~7 ms less CPU per tool start; ~90 MB each): docs/operations.md, "Install".
RELEASE := -c release --static-swift-stdlib
# Tests build in their own folder (release + -enable-testing for @testable imports), so the
# installed binaries are never built with testing hooks.
TEST_FLAGS := -c release -Xswiftc -enable-testing --scratch-path .build-test
BIN := $(shell $(SWIFT) build $(RELEASE) --show-bin-path 2>/dev/null)

APT_PACKAGES := libopenblas-dev libzstd-dev pkg-config zstd jq python3 python3-venv
# Only `make test` needs these: Debian's chromium opens pp-select's report headless
# (tools/report-test.py, issue 17).
TEST_APT_PACKAGES := chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps test-deps build test report-test test-sanitize crash-soak test-systemd demo bench bench-quick bench-accuracy drift drift-quick production-sim install man clean fuzz fuzz-smoke

all: build

# Installs the Debian packages that are missing (apt's configured sources; no other host).
# test-deps: those of APT_PACKAGES and TEST_APT_PACKAGES.
deps test-deps:
	@missing=""; for p in $(APT_PACKAGES) $(if $(filter test-deps,$@),$(TEST_APT_PACKAGES)); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "make deps: no swift toolchain on PATH (Swift 6 needed)"; exit 1; }

build: deps
	$(SWIFT) build $(RELEASE)

test: test-deps
	$(SWIFT) build $(TEST_FLAGS)
	$(SWIFT) test $(TEST_FLAGS) --disable-swift-testing
	Tests/systemd/run.sh "$$($(SWIFT) build $(TEST_FLAGS) --show-bin-path)"
	python3 tools/report-test.py --bin "$$($(SWIFT) build $(TEST_FLAGS) --show-bin-path)"
	bench/setup.sh drift
	PP_BIN="$$($(SWIFT) build $(TEST_FLAGS) --show-bin-path)" bench/venv/bin/python -m unittest -v bench/test_drift.py
	PP_BIN="$$($(SWIFT) build $(TEST_FLAGS) --show-bin-path)" DRIFT_QUICK=1 bench/drift.sh
	python3 tools/production-sim.py --bin "$$($(SWIFT) build $(TEST_FLAGS) --show-bin-path)" --days 90 --ingest-every 43200 --check \
	  --work bench/work/production-sim-test
	python3 tools/crash-soak.py --bin "$$($(SWIFT) build $(TEST_FLAGS) --show-bin-path)" --kills 20 --work bench/work/crash-soak-test
	FUZZ_SECONDS=10 SWIFT=$(SWIFT) tools/fuzz.sh

# libFuzzer targets (Fuzz/, tools/fuzz.sh): checkpoint and shard readers, the input parser,
# control.json, policy.json, selections.jsonl; each FUZZ_SECONDS (default 600) from the seed
# corpus in Fuzz/corpus. fuzz-smoke: 20 s each. A crash fails the target.
FUZZ_SECONDS ?= 600
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) SWIFT=$(SWIFT) tools/fuzz.sh

fuzz-smoke: deps
	FUZZ_SECONDS=20 SWIFT=$(SWIFT) tools/fuzz.sh

# make crash-soak [SOAK_KILLS=200]: the pipeline (pp-train daemon, pp-ingest, pp-eval --pending,
# pp-select) on a replayed stream with a random tool SIGKILLed every few seconds, then checks
# that no input was lost or trained twice and every visible file is valid (tools/crash-soak.py).
# `make test` runs 20 kills (about 2 minutes).
SOAK_KILLS ?= 200
crash-soak: build
	python3 tools/crash-soak.py --bin "$(BIN)" --kills $(SOAK_KILLS)

# The XCTest suite under AddressSanitizer, then under ThreadSanitizer (issue 15), each in its
# own scratch folder (.build-asan, .build-tsan). SANITIZE_FILTER=REGEX limits the tests run.
# Leak detection is off: the Swift runtime's metadata caches live until exit and read as
# leaks. tools/tsan.supp holds the Hogwild trainer's intended races, and only those.
SANITIZE_FILTER ?=
SAN_TEST = $(SWIFT) test -c release -Xswiftc -enable-testing --disable-swift-testing $(if $(SANITIZE_FILTER),--filter '$(SANITIZE_FILTER)')
test-sanitize: deps
	ASAN_OPTIONS=detect_leaks=0 $(SAN_TEST) --scratch-path .build-asan --sanitize=address
	TSAN_OPTIONS="suppressions=$(CURDIR)/tools/tsan.supp halt_on_error=1" $(SAN_TEST) --scratch-path .build-tsan --sanitize=thread

# The systemd units alone: static checks, then a real systemd in a container (as root; see
# docs/operations.md, "How the units are tested"). PP_SYSTEMD_TEST=static|0 limits it.
test-systemd: deps
	$(SWIFT) build $(TEST_FLAGS)
	Tests/systemd/run.sh "$$($(SWIFT) build $(TEST_FLAGS) --show-bin-path)"

# pp-select report and the Grafana dashboard on a real state folder, the report opened in
# headless chromium (tools/report-test.py, issue 17; part of `make test`). The page and its
# screenshot stay in .build-test/report-test/report/.
report-test: test-deps
	$(SWIFT) build $(TEST_FLAGS)
	python3 tools/report-test.py --bin "$$($(SWIFT) build $(TEST_FLAGS) --show-bin-path)"

# make demo POPULATION=3: a population of three runs (issue 16; demo/run.sh).
demo: build
	PP_BIN="$(BIN)" POPULATION="$(POPULATION)" demo/run.sh

bench: build
	PP_BIN="$(BIN)" bench/run.sh

bench-quick: build
	PP_BIN="$(BIN)" BENCH_QUICK=1 bench/run.sh

# The static accuracy check alone (issue 19; also the last part of `make bench`): pp-train at
# its defaults against fastText (defaults and the best of a small grid) and VW on two data sets
# built from Debian's packages, with 95% intervals (bench/accuracy.py; ~15-25 min on 2 cores).
# ACC_SETS=debian|wordnet, ACC_PP_VARIANTS="name=flags;...", ACC_NO_REFS=1: see the script.
bench-accuracy: build
	bench/setup.sh drift
	PP_BIN="$(BIN)" python3 bench/accuracy.py

# make drift [STREAM=git|util-linux] [PERIOD=2023-2025] [STREAM_DIR=DIR NAME=NAME]: the week-by-
# week replay of real streams through the tools beside weekly fastText retraining and Vowpal
# Wabbit (bench/README.md, "make drift"); drift-quick: a few weeks, the output's shape only.
# make drift POPULATION=3: the Perpetuum side as a population of three runs (issue 16).
drift: build
	PP_BIN="$(BIN)" STREAM="$(STREAM)" PERIOD="$(PERIOD)" STREAM_DIR="$(STREAM_DIR)" NAME="$(NAME)" POPULATION="$(POPULATION)" bench/drift.sh

drift-quick: build
	PP_BIN="$(BIN)" STREAM="$(STREAM)" PERIOD="$(PERIOD)" STREAM_DIR="$(STREAM_DIR)" NAME="$(NAME)" DRIFT_QUICK=1 bench/drift.sh

# make production-sim [SIM_DAYS=90] [SIM_EVERY=3600]: months of production on a compressed clock
# (tools/production-sim.py): the tools as the units run them, a batch landing every SIM_EVERY
# simulated seconds, hourly checkpoints, daily selection with retention; checks the disk budget,
# flat evaluation work and the deployed model's age. `make test` runs 90 days at one batch
# every 12 hours (about 4 minutes).
SIM_DAYS ?= 90
SIM_EVERY ?= 3600
production-sim: build
	python3 tools/production-sim.py --bin "$(BIN)" --days $(SIM_DAYS) --ingest-every $(SIM_EVERY) --check

# make install: the binaries, the systemd units and perpetuum.target's population generator,
# sysusers.d/tmpfiles.d entries, man pages
# generated from the argument parsers (swift-argument-parser's generate-manual tool), bash/zsh/
# fish completions and docs/operations.md. PREFIX and DESTDIR as usual; the units' /usr/local/
# paths are rewritten to PREFIX. BIN=DIR on the command line installs binaries already built in
# DIR instead of building (the systemd test installs the test build this way).
# After a real install (no DESTDIR), docs/operations.md "Install" lists the commands to run.
TOOLS := pp-ingest pp-train pp-eval pp-select
UNITDIR ?= $(PREFIX)/lib/systemd/system
GENERATORDIR ?= $(PREFIX)/lib/systemd/system-generators
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/perpetuum
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
MANOUT := .build/man

install: $(if $(filter command line,$(origin BIN)),,build) man
	install -d $(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(GENERATORDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	for t in $(TOOLS); do install -m 0755 "$(BIN)/$$t" $(BINDIR)/$$t; done
	for u in systemd/*.service systemd/*.timer systemd/*.path systemd/*.target systemd/*.slice; do \
	  sed 's|/usr/local/|$(PREFIX)/|g' "$$u" > "$(DESTDIR)$(UNITDIR)/$${u#systemd/}" && chmod 0644 "$(DESTDIR)$(UNITDIR)/$${u#systemd/}" || exit 1; \
	done
	sed 's|/usr/local/|$(PREFIX)/|g' systemd/perpetuum-population-generator > "$(DESTDIR)$(GENERATORDIR)/perpetuum-population-generator" && \
	  chmod 0755 "$(DESTDIR)$(GENERATORDIR)/perpetuum-population-generator"
	install -m 0644 systemd/perpetuum.sysusers $(DESTDIR)$(SYSUSERSDIR)/perpetuum.conf
	install -m 0644 systemd/perpetuum.tmpfiles $(DESTDIR)$(TMPFILESDIR)/perpetuum.conf
	install -m 0644 $(MANOUT)/*.1 $(DESTDIR)$(MANDIR)/man1/
	for t in $(TOOLS); do \
	  "$(BIN)/$$t" --generate-completion-script bash > "$(DESTDIR)$(BASHCOMPDIR)/$$t" && \
	  "$(BIN)/$$t" --generate-completion-script zsh > "$(DESTDIR)$(ZSHCOMPDIR)/_$$t" && \
	  "$(BIN)/$$t" --generate-completion-script fish > "$(DESTDIR)$(FISHCOMPDIR)/$$t.fish" || exit 1; \
	done
	install -m 0644 docs/operations.md $(DESTDIR)$(DOCDIR)/operations.md

# Man pages from the argument-parser definitions of the built tools in $(BIN), into $(MANOUT).
# `swift package plugin generate-manual --help` only builds swift-argument-parser's
# generate-manual tool (once); running that tool on our binaries directly avoids the plugin's
# own full rebuild of the package with other flags. The date is the last commit's, so the
# pages do not change from one install to the next.
man: $(if $(filter command line,$(origin BIN)),,build)
	$(SWIFT) package plugin generate-manual --help >/dev/null
	rm -rf $(MANOUT) && mkdir -p $(MANOUT)
	tool=$$(find .build -path '*/generate-manual-tool' -type f -perm -u+x | head -1); \
	[ -n "$$tool" ] || { echo "make man: generate-manual was not built"; exit 1; }; \
	date=$$(git log -1 --format=%cs 2>/dev/null || date +%F); \
	for t in $(TOOLS); do "$$tool" "$(BIN)/$$t" --date "$$date" --output-directory $(MANOUT) || exit 1; done

clean:
	rm -rf .build .build-test .build-fuzz .build-asan .build-tsan demo/root bench/work
