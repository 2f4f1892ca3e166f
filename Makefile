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

.PHONY: test
test: test-deploy ## Install PostgreSQL/Redis if missing, then run all tests (unit and integration)
	@bash scripts/deps.sh
	$(GO) test -count=1 -timeout 15m ./...

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
	cd deploy && $(GO) vet -mod=mod ./...

.PHONY: bench
bench: ## Write-path benchmark with its own PostgreSQL (fsync on) and Redis; ~3 min; writes bench/results/latest.md
	@bash scripts/deps.sh
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/datastorage ./cmd/datastorage
	$(GO) run ./cmd/dsbench -server bin/datastorage $(BENCH_ARGS)

# Not part of `make bench`: loading and indexing 10M events alone takes longer than
# the ~10 minutes `make bench` may take on a 2-CPU machine. Smaller: READ_EVENTS=2000000.
READ_EVENTS ?= 10000000
.PHONY: bench-read
bench-read: ## Read-path benchmark: loads READ_EVENTS (10M) events, times list/timeline/aggregations over HTTP; ~25 min at 10M; writes bench/results/read.md
	@bash scripts/deps.sh
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/datastorage ./cmd/datastorage
	$(GO) run ./cmd/dsbench -read -read-events $(READ_EVENTS) -server bin/datastorage $(BENCH_ARGS)

CONSOLE_EVENTS ?= 1000000
.PHONY: bench-console
bench-console: ## Console render time over CONSOLE_EVENTS (1M) events; writes bench/results/console.md
	@bash scripts/deps.sh
	DATASTORAGE_CONSOLE_SCALE=$(CONSOLE_EVENTS) $(GO) test -count=1 -timeout 30m -run TestConsoleRenderTimeAtScale -v ./internal/console/

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
