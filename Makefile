# callledger — build, test and generate. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --warn-undefined-variables --no-builtin-rules

# Pinned tool versions: `make proto` and `make lint` give the same result on
# any machine that has Go.
BUF_VERSION                := v1.57.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
# protoc-gen-grpc-gateway and protoc-gen-openapiv2 (the REST routes and the
# OpenAPI document); the same version as the runtime in go.mod.
GRPC_GATEWAY_VERSION       := v2.34.0
STATICCHECK_VERSION        := v0.8.2
# DuckDB's Node.js package, with which a test reads `export events`' Parquet.
DUCKDB_NODE_VERSION        := 1.5.6-r.1

TMP := .tmp
BIN := $(abspath $(TMP)/bin)
export PATH := $(BIN):$(PATH)
GO ?= go

# The ingest benchmark's knobs (see docs/BENCHMARKS.md).
BENCH_DURATION ?= 20s
BENCH_RATE     ?= 5000
# What bench-compare, bench-tail and bench-getcall(-pinned) run the working tree against.
BENCH_BASE ?= main
# The rebuild benchmark's ledger sizes (events).
BENCH_REBUILD_EVENTS ?= 1000000 3000000 10000000

.PHONY: help
help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: ## Run callledger serve with the embedded store in ./data
	$(GO) run ./cmd/callledger serve

.PHONY: build
build: ## Build bin/callledger
	$(GO) build -o bin/callledger ./cmd/callledger

.PHONY: test
test: chromium ## Run every test (race detector on, fuzz seed corpora included; the board's in headless Chromium)
	$(GO) test -race -count=1 -timeout 10m ./...

# The call board's tests drive Debian's chromium headless; they are skipped
# without it, except in CI (CI set), where they must run.
.PHONY: chromium
chromium: ## Install Debian's chromium package for the browser tests when missing (as root)
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "chromium not found and not root: install Debian's chromium package, or the board's browser tests are skipped" >&2; \
		else \
			echo "chromium not found: installing Debian's chromium package" >&2; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
		fi; \
	fi

.PHONY: screenshot
screenshot: chromium ## Retake docs/board.png, the README's screenshot of the call board
	$(GO) test -count=1 -run '^TestBoardOverview$$' ./e2e -board-screenshot=$(abspath docs/board.png)

# Crash cycles of `make chaos` (make test runs 10).
CHAOS_CYCLES ?= 100

.PHONY: chaos
chaos: ## Kill a serving child process with SIGKILL under load $(CHAOS_CYCLES) times; every acknowledged webhook must survive once
	CALLLEDGER_CRASH_CYCLES=$(CHAOS_CYCLES) $(GO) test -race -count=1 -timeout 30m -run '^TestCrashCycles$$' -v ./cmd/callledger

.PHONY: bench-floods
bench-floods: ## Peak RSS of serve under floods of webhooks, WatchCalls and ListCallEvents (docs/BENCHMARKS.md)
	CALLLEDGER_BENCH_FLOODS=1 $(GO) test -count=1 -timeout 20m -run '^TestFloodMemory$$' -v ./cmd/callledger

BENCH_HEAL_EVENTS ?= 1000000

.PHONY: bench-heal
bench-heal: ## Time from a corrupt read model to correct answers again, on a $(BENCH_HEAL_EVENTS)-event ledger
	CALLLEDGER_BENCH_HEAL_EVENTS=$(BENCH_HEAL_EVENTS) $(GO) test -count=1 -timeout 30m -run '^TestHealTime$$' -v ./projections/callversions

.PHONY: bench-backup
bench-backup: ## Online backup of a 1M-event ledger under simulated traffic, then check and serve it (docs/BENCHMARKS.md)
	./scripts/bench-backup.sh

.PHONY: proto
proto: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-grpc-gateway $(BIN)/protoc-gen-openapiv2 ## Regenerate api/ and the OpenAPI document from proto/
	buf format -w --exclude-path proto/google
	buf generate

# What `make proto` writes: Go code, and the OpenAPI document the API serves.
GENERATED := api proto services/httpapi/openapi

.PHONY: checkgenerate
checkgenerate: proto ## Fail when committed generated code is stale
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
		echo "generated code is stale: run 'make proto' and commit the result" >&2; \
		git status --porcelain -- $(GENERATED) >&2; git diff --stat -- $(GENERATED) >&2; exit 1; \
	fi

# The committed image of proto/ (without comments) that `buf breaking`
# checks against, and the corpus of stored events: the ledger must decode the
# same forever, and CI runs on a fresh clone, where git history may be
# missing (docs/EVENTS.md).
PROTO_BASELINE := proto/baseline.binpb
STORED_EVENTS  := eventcodec/testdata/stored

.PHONY: breaking
breaking: $(BIN)/buf ## Stored events stay readable: buf breaking (baseline, previous commit), baseline current, stored corpus unchanged
	buf breaking --against $(PROTO_BASELINE)
	@buf build --exclude-source-info -o - | cmp -s - $(PROTO_BASELINE) || { \
		echo "proto/ differs from $(PROTO_BASELINE): run 'make proto-baseline' and commit it" >&2; exit 1; }
	@if git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then \
		prev=$$(mktemp -d); trap 'rm -rf "$$prev"' EXIT; \
		git archive HEAD~1 buf.yaml proto | tar -x -C "$$prev"; \
		echo "buf breaking --against HEAD~1"; \
		buf breaking --against "$$prev"; \
		changed=$$(git diff --name-only --diff-filter=DMRT HEAD~1 -- '$(STORED_EVENTS)/v*'); \
		dropped=$$(git diff --unified=0 HEAD~1 -- $(STORED_EVENTS)/SHA256SUMS | grep '^-[0-9a-f]' || true); \
		if [ -n "$$changed$$dropped" ]; then \
			echo "stored events changed or removed since HEAD~1 (they never change; docs/EVENTS.md):" >&2; \
			printf '%s\n' $$changed "$$dropped" >&2; exit 1; \
		fi; \
	else \
		echo "no previous commit (shallow clone): checked against $(PROTO_BASELINE) and $(STORED_EVENTS)/SHA256SUMS only"; \
	fi
	./scripts/breaking-detects.sh $(PROTO_BASELINE)

.PHONY: proto-baseline
proto-baseline: $(BIN)/buf ## Refresh proto/baseline.binpb after a compatible change (runs buf breaking first)
	buf breaking --against $(PROTO_BASELINE)
	buf build --exclude-source-info -o $(PROTO_BASELINE)

.PHONY: lint
lint: $(BIN)/buf $(BIN)/staticcheck ## buf lint, gofmt, go vet, staticcheck
	buf lint
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^api/')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...

.PHONY: lint-rules
lint-rules: ## promtool check rules on docs/alerts (installs Debian's prometheus package when promtool is missing)
	@command -v promtool >/dev/null || { \
		echo "promtool not found: installing Debian's prometheus package" >&2; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
	}
	promtool check rules docs/alerts/*.rules.yml
	promtool test rules docs/alerts/*.test.yml

.PHONY: bench
bench: ## Run the Go micro-benchmarks
	$(GO) test -run='^$$' -bench=. -benchmem ./...

.PHONY: bench-ingest
bench-ingest: ## Ingest benchmark with wrk: saturation and fixed rate (needs wrk)
	./scripts/bench-ingest.sh $(BENCH_DURATION) $(BENCH_RATE)

.PHONY: bench-compare
bench-compare: ## Ingest at saturation against the no-op ceiling: $(BENCH_BASE) and the working tree interleaved (needs wrk)
	./scripts/bench-compare.sh ingest $(BENCH_BASE)

.PHONY: bench-tail
bench-tail: ## 5,000 webhooks/s for 60 s from a fresh start, and the vegeta command for 30 s: $(BENCH_BASE) and the working tree interleaved
	./scripts/bench-compare.sh tail $(BENCH_BASE)

.PHONY: bench-getcall
bench-getcall: ## GetCall on 1M calls at 10,000/s open loop: $(BENCH_BASE) and the working tree interleaved
	./scripts/bench-compare.sh getcall $(BENCH_BASE)

.PHONY: bench-getcall-pinned
bench-getcall-pinned: ## GetCall on 1M calls at 10,000/s open loop, serve on CPU 0 and its client on CPU 1: $(BENCH_BASE) and the working tree interleaved
	./scripts/bench-compare.sh getcall-pinned $(BENCH_BASE)

.PHONY: bench-rebuild
bench-rebuild: ## Rebuild benchmark: 1M, 3M and 10M-event ledgers from zero (events/s, peak RSS)
	./scripts/bench-rebuild.sh $(BENCH_REBUILD_EVENTS)

.PHONY: duckdb
duckdb: $(TMP)/duckdb/node_modules/@duckdb/node-api ## Install DuckDB (npm) for the test that reads exported Parquet with it

$(TMP)/duckdb/node_modules/@duckdb/node-api: Makefile
	mkdir -p $(TMP)/duckdb
	cd $(TMP)/duckdb && npm install --no-audit --no-fund --no-save @duckdb/node-api@$(DUCKDB_NODE_VERSION)
	touch $@

.PHONY: ci
ci: export CALLLEDGER_REQUIRE_DUCKDB = 1
ci: checkgenerate breaking lint lint-rules duckdb test ## What .ci/run runs

$(BIN)/buf: Makefile
	GOBIN=$(BIN) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@touch $@

$(BIN)/protoc-gen-go: Makefile
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@touch $@

$(BIN)/protoc-gen-go-grpc: Makefile
	GOBIN=$(BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	@touch $@

$(BIN)/protoc-gen-grpc-gateway: Makefile
	GOBIN=$(BIN) $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
	@touch $@

$(BIN)/protoc-gen-openapiv2: Makefile
	GOBIN=$(BIN) $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
	@touch $@

$(BIN)/staticcheck: Makefile
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@touch $@
