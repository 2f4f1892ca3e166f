# Data Storage — `make help` lists the targets.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X kubernaut.ai/datastorage/internal/version.Version=$(VERSION)

.PHONY: help
help: ## List the targets
	@echo "Usage: make TARGET"
	@echo
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_-]+:.*## / { printf "  %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

.PHONY: run
run: ## Run the service locally with private PostgreSQL and Redis under .dev/ (Ctrl-C stops all)
	@bash scripts/dev.sh

.PHONY: build
build: ## Build bin/datastorage, stamped with the git version
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/datastorage ./cmd/datastorage

# The Go modules of the repository: the service, the SDK and its metrics (each its own module,
# used by the service through replace directives), and deploy/ (below).
SDK_MODULES := client client/clientmetrics

.PHONY: test
test: test-deploy ## Install PostgreSQL/Redis if missing, then run all tests (unit and integration)
	@bash scripts/deps.sh
	$(GO) test -count=1 -timeout 15m ./...
	for m in $(SDK_MODULES); do (cd $$m && $(GO) test -count=1 ./...); done

# deploy/ is a Go module of its own (kustomize, Kubernetes types, PromQL parser: test-only
# dependencies kept out of the service's go.mod). It follows the service's module through a
# replace directive; -mod=mod lets it pick up go.sum entries when that module's requirements
# change, instead of failing until someone tidies deploy/go.mod.
.PHONY: test-deploy
test-deploy: ## Render the Kubernetes manifests and check them, the alert rules, the dashboard, the Dockerfiles and the CI workflows
	@bash scripts/deps.sh
	cd deploy && $(GO) test -count=1 -mod=mod ./...

.PHONY: test-short
test-short: ## Run the unit tests only (integration tests skip under -short)
	$(GO) test -short ./...

.PHONY: vet
vet: ## Check formatting (gofmt) and run go vet
	@unformatted=$$(find . \( -path ./.git -o -path ./.dev -o -name testdata \) -prune -o -name '*.go' -print | xargs gofmt -l); \
	if [[ -n $$unformatted ]]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	for m in $(SDK_MODULES); do (cd $$m && $(GO) vet ./...); done
	cd deploy && $(GO) vet -mod=mod ./...

# Pinned: a new staticcheck release may bring new checks, which should arrive in a commit of their
# own rather than fail CI on an unrelated change. `go run pkg@version` builds it once per machine
# from the Go module proxy (into the build cache) without touching go.mod.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

.PHONY: lint
lint: ## Run staticcheck (pinned version) on every module
	$(STATICCHECK) ./...
	for m in $(SDK_MODULES); do (cd $$m && $(STATICCHECK) ./...); done
	cd deploy && GOFLAGS=-mod=mod $(STATICCHECK) ./...

.PHONY: tidy-check
tidy-check: ## Fail if `go mod tidy` would change go.mod or go.sum of any module (prints the diff)
	$(GO) mod tidy -diff
	for m in $(SDK_MODULES) deploy; do (cd $$m && $(GO) mod tidy -diff); done

# The packages that run goroutines or share state between them. Their unit tests run under the
# race detector (-short: the integration tests, which start servers, would take several times
# longer under -race on 2 CPUs); ingest and spool are quick enough to run in full. -race needs
# cgo, so a C compiler: scripts/deps.sh installs gcc.
RACE_SHORT := ./cmd/datastorage/... ./cmd/dsbench/... ./internal/audit/... ./internal/auth/... ./internal/httpapi/... \
	./internal/objstore/... ./internal/query/... ./internal/readroute/... ./internal/store/... ./internal/testenv/... ./test/sdk/...
RACE_FULL := ./internal/ingest/... ./internal/spool/...

.PHONY: race
race: ## Run the unit tests of the concurrent packages (and all of ingest, spool) under the race detector
	@bash scripts/deps.sh
	CGO_ENABLED=1 $(GO) test -count=1 -race -short $(RACE_SHORT)
	CGO_ENABLED=1 $(GO) test -count=1 -race $(RACE_FULL)
	for m in $(SDK_MODULES); do (cd $$m && CGO_ENABLED=1 $(GO) test -count=1 -race ./...); done

.PHONY: check
check: vet lint tidy-check race test ## What CI runs (.ci/run): vet, staticcheck, tidy, race, then every test

# bench/results/ is a record: reports committed on purpose, with the change they measure, each
# naming the command that wrote it (bench/README.md). A plain run is output and goes to bin/bench/
# (ignored, like all of bin/); RECORD=1 writes the record instead, to be committed.
BENCH_DIR := $(if $(RECORD),bench/results,bin/bench)

.PHONY: bench
bench: ## Write-path (and what WAIT costs a spooled write) and catalog benchmarks with their own PostgreSQL (fsync on) and Redis; ~6 min; writes bin/bench/latest.md and catalog.md (RECORD=1: bench/results/)
	@bash scripts/deps.sh
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/datastorage ./cmd/datastorage
	$(GO) run ./cmd/dsbench -server bin/datastorage -out $(BENCH_DIR)/latest.md -profiles bin/bench/profiles $(BENCH_ARGS)
	$(GO) run ./cmd/dsbench -catalog -server bin/datastorage -out $(BENCH_DIR)/catalog.md $(CATALOG_BENCH_ARGS)

# What a streaming standby costs the write path (issue 13): the HTTP scenarios with an async
# standby, then a synchronous one, on the same machine; ~5 min. Compare with a `make bench` of
# the same hour (bench/results/standby.md did so three runs in a row).
.PHONY: bench-standby
bench-standby: ## Write benchmark with a streaming standby, async then sync; writes bin/bench/standby-async.md and standby-sync.md (RECORD=1: bench/results/)
	@bash scripts/deps.sh
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/datastorage ./cmd/datastorage
	$(GO) run ./cmd/dsbench -server bin/datastorage -skip-raw -skip-spool -standby async -out $(BENCH_DIR)/standby-async.md -profiles bin/bench/profiles $(BENCH_ARGS)
	$(GO) run ./cmd/dsbench -server bin/datastorage -skip-raw -skip-spool -standby sync -out $(BENCH_DIR)/standby-sync.md -profiles bin/bench/profiles $(BENCH_ARGS)

# Not part of `make bench`: loading and indexing 10M events alone takes longer than
# the ~10 minutes `make bench` may take on a 2-CPU machine. Smaller: READ_EVENTS=2000000.
READ_EVENTS ?= 10000000
.PHONY: bench-read
bench-read: ## Read-path benchmark: loads READ_EVENTS (10M) events, times list/timeline/aggregations over HTTP; ~25 min at 10M; writes bin/bench/read.md (RECORD=1: bench/results/)
	@bash scripts/deps.sh
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/datastorage ./cmd/datastorage
	$(GO) run ./cmd/dsbench -read -read-events $(READ_EVENTS) -server bin/datastorage -out $(BENCH_DIR)/read.md -profiles bin/bench/profiles $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-archive ARCHIVE_EVENTS=$(ARCHIVE_EVENTS)

# The archive tier (issue 14): a month of ARCHIVE_EVENTS correctly chained events archived to a
# directory, then timelines read from the files. Run alone, or after bench-read.
ARCHIVE_EVENTS ?= $(READ_EVENTS)
.PHONY: bench-archive
bench-archive: ## Archive benchmark: throughput, Parquet bytes per event, archived-timeline p50/p99 over ARCHIVE_EVENTS (READ_EVENTS) events; writes bin/bench/archive.md (RECORD=1: bench/results/)
	@bash scripts/deps.sh
	$(GO) run ./cmd/dsbench -archive -archive-events $(ARCHIVE_EVENTS) -out $(BENCH_DIR)/archive.md $(BENCH_ARGS)

# The store's write-path experiments (index cost per row, batch statements, chain cost) are Go
# benchmarks next to the store's code (internal/store/write_bench_test.go); each case migrates
# its own database. STORE_BENCHTIME=20x is ~4 min on 2 busy CPUs.
STORE_BENCHTIME ?= 20x
.PHONY: bench-store
bench-store: ## Store benchmarks: what each index, batch statement and the hash chains cost per row (rows/s, PostgreSQL CPU and WAL per row)
	@bash scripts/deps.sh
	$(GO) test -count=1 -run '^$$' -bench 'IndexCost|WriteStatement|ChainCost' -benchtime $(STORE_BENCHTIME) -timeout 30m ./internal/store/

CONSOLE_EVENTS ?= 1000000
.PHONY: bench-console
bench-console: ## Console render time over CONSOLE_EVENTS (1M) events; writes bin/bench/console.md (RECORD=1: bench/results/)
	@bash scripts/deps.sh
	DATASTORAGE_CONSOLE_SCALE=$(CONSOLE_EVENTS) DATASTORAGE_CONSOLE_REPORT=$(CURDIR)/$(BENCH_DIR)/console.md $(GO) test -count=1 -timeout 30m -run TestConsoleRenderTimeAtScale -v ./internal/console/

.PHONY: screenshots
screenshots: ## Write screenshots of every console page, light and dark, to docs/console/
	@bash scripts/deps.sh
	DATASTORAGE_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run TestScreenshots ./internal/console/

.PHONY: clean
clean: ## Remove build output (bin/); keeps the .dev/ data
	rm -rf bin

.PHONY: clean-dev
clean-dev: ## Stop the local servers and delete their data (.dev/)
	@bash scripts/dev.sh stop
	rm -rf .dev
