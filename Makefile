# Aura — build, test, run. `make help` lists the targets.
GO        ?= go
BIN       := bin
DATA      ?= .aura-data
LISTEN    ?= 127.0.0.1:7070
PROTO_SRC := $(wildcard proto/aura/v1/*.proto)

.PHONY: help build test test-short race run proto lint bench bench-quick stress clean

help: ## this list
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build aurad and auractl into bin/
	$(GO) build -o $(BIN)/aurad ./cmd/aurad
	$(GO) build -o $(BIN)/auractl ./cmd/auractl

test: ## vet + every test under the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 10m ./...

run: build ## start aurad on examples/plans with a data dir under the repo
	./$(BIN)/aurad serve --plans examples/plans --data $(DATA) --listen $(LISTEN)

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

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'))" || { gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: ## measure issue 9's figures (medians of repeated runs): writes BENCHMARKS.md and bench.txt
	$(GO) run ./bench/report -out BENCHMARKS.md -raw bench.txt

bench-quick: ## one quick run of every figure (a smoke test): bin/BENCHMARKS-quick.md
	@mkdir -p $(BIN)
	$(GO) run ./bench/report -quick -out $(BIN)/BENCHMARKS-quick.md -raw $(BIN)/bench-quick.txt

stress: ## full-size attacks against the real daemon (22,000 idle connections; AURA_STRESS_CONNS, AURA_STRESS_ARGS)
	$(GO) test -tags stress -run 'TestStress' -count=1 -timeout 20m -v ./e2e/

clean:
	rm -rf $(BIN) $(DATA)
