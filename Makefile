# Aura — build, test, run. `make help` lists the targets.
GO        ?= go
BIN       := bin
DATA      ?= .aura-data
LISTEN    ?= 127.0.0.1:7070
UI_LISTEN ?= 127.0.0.1:7071
PROTO_SRC := $(wildcard proto/aura/v1/*.proto)
# Debian's python3, which python3-grpcio and python3-grpc-tools install
# into; a python3 earlier on PATH (pyenv, a virtualenv) may not have them.
PYTHON    ?= /usr/bin/python3
IMAGE     ?= aurad:dev
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: help build test run proto python-stubs image lint bench bench-quick bench-peers stress screenshots clean

help: ## this list
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

# `aurad version` and `auractl version` print VERSION: the go command's own
# VCS stamp is missing from builds in a git worktree or with -buildvcs=false.
LDFLAGS   := -X main.version=$(VERSION)
# auractl's --addr, when make run listens elsewhere than auractl's default.
RUN_ADDR  := $(if $(filter 127.0.0.1:7070,$(LISTEN)),, --addr $(LISTEN))

build: ## build aurad and auractl into bin/ (their version is VERSION, git describe by default)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/aurad ./cmd/aurad
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/auractl ./cmd/auractl

test: ## vet + every test under the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 10m ./...

run: build ## start aurad on examples/plans (LISTEN=127.0.0.1:7070, DATA=.aura-data) and say what to try
	@echo "Starting aurad on $(LISTEN) with the example plans; its store is in $(DATA)/. Ctrl-C stops it."
	@echo "In another terminal:"
	@echo "  $(BIN)/auractl$(RUN_ADDR) plans"
	@echo "  $(BIN)/auractl$(RUN_ADDR) submit demo/hello --follow"
	@echo "  $(BIN)/auractl$(RUN_ADDR) submit demo/slow --timeout 3s --wait"
	@echo "  $(BIN)/auractl$(RUN_ADDR) list"
	@echo "  $(BIN)/auractl$(RUN_ADDR) submit devicefarm/post_message --input text=hi --wait"
	@echo "  $(BIN)/auractl$(RUN_ADDR) resources"
	@echo "docs/getting-started.md goes on from there."
	@echo "The web UI: http://$(UI_LISTEN)/ (docs/ui.md)"
	$(BIN)/aurad serve --plans examples/plans --data $(DATA) --listen $(LISTEN) --resources examples/resources.yaml --ui-listen $(UI_LISTEN)

proto: ## regenerate the committed protobuf code with the tools pinned in go.mod
	@# buf/validate/validate.proto comes from the Go module pinned in go.mod.
	@mkdir -p $(BIN)
	$(GO) run ./proto/tools/validatedesc $(BIN)/validate.pb
	protoc -I proto --descriptor_set_in=$(BIN)/validate.pb \
		--plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
		--plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
		--go_out=. --go_opt=module=github.com/aura-dev/aura \
		--go-grpc_out=. --go-grpc_opt=module=github.com/aura-dev/aura \
		$(PROTO_SRC)
	$(GO) run ./docs/gen

python-stubs: ## generate Python gRPC stubs from proto/ into bin/python (Debian: python3-grpcio python3-grpc-tools)
	@$(PYTHON) -c 'import grpc, grpc_tools.protoc' 2>/dev/null || { \
		echo "$(PYTHON) lacks grpc or grpc_tools: apt-get install python3-grpcio python3-grpc-tools (or set PYTHON=)"; exit 1; }
	@mkdir -p $(BIN)/python
	@# The API without its server-side validation rules: the stubs then need
	@# no buf/validate Python package (see proto/tools/clientdesc).
	$(GO) run ./proto/tools/clientdesc $(BIN)/aura-client.pb
	@# grpc_tools' own entry point adds an -I, which --descriptor_set_in excludes.
	$(PYTHON) -c 'import sys; from grpc_tools import protoc; sys.exit(protoc.main(sys.argv))' \
		--descriptor_set_in=$(BIN)/aura-client.pb \
		--python_out=$(BIN)/python --grpc_python_out=$(BIN)/python \
		aura/v1/execution.proto aura/v1/hooks.proto

image: ## build the container image (IMAGE=aurad:dev) from deploy/Dockerfile; needs a Docker engine
	docker build -f deploy/Dockerfile -t $(IMAGE) --build-arg VERSION=$(VERSION) .

lint: ## gofmt, go vet, staticcheck, go.mod tidy
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) mod tidy -diff

bench: ## measure every benchmark figure (medians of repeated runs): writes BENCHMARKS.md and bench.txt
	$(GO) run ./bench/report -out BENCHMARKS.md -raw bench.txt

bench-quick: ## one quick run of every figure (a smoke test): bin/BENCHMARKS-quick.md
	@mkdir -p $(BIN)
	$(GO) run ./bench/report -quick -out $(BIN)/BENCHMARKS-quick.md -raw $(BIN)/bench-quick.txt

# The peers' clients live in bench/peers, a module of its own, so their
# dependencies stay out of go.mod. PEERS_ARGS passes flags (-tasks 5000
# -rounds 3 for a shorter run; go run . -h in bench/peers lists them).
bench-peers: ## Aura beside Asynq (Redis) and River (PostgreSQL), same workloads, interleaved rounds: its section of BENCHMARKS.md and bench-peers.txt; uses Debian's redis-server and postgresql (apt-get install redis-server postgresql), skips a peer without them
	cd bench/peers && $(GO) run . -root ../.. -out ../../BENCHMARKS.md -raw ../../bench-peers.txt $(PEERS_ARGS)

stress: ## full-size attacks on a real aurad (memory, loops, 22,000 idle connections): minutes and, without the limits, gigabytes; AURA_STRESS_CONNS, AURA_STRESS_ARGS
	AURA_STRESS=1 $(GO) test -tags stress -count=1 -timeout 60m -v -run 'TestStress' ./e2e/

screenshots: ## retake docs/ui/*.png, the web UI screenshots in docs/ui.md, with the browser tests' Chromium
	@command -v chromium >/dev/null 2>&1 || { echo "no chromium: apt-get install -y chromium"; exit 1; }
	mkdir -p docs/ui
	AURA_REQUIRE_CHROMIUM=1 AURA_UI_SCREENSHOTS=$(CURDIR)/docs/ui $(GO) test -count=1 -run 'TestUIBrowser|TestUIAuth' ./e2e/

clean: ## remove bin/ and the make run data dir
	rm -rf $(BIN) $(DATA)
