# Aura — build, test, run. `make help` lists the targets.
GO        ?= go
BIN       := bin
DATA      ?= .aura-data
LISTEN    ?= 127.0.0.1:7070
PROTO_SRC := $(wildcard proto/aura/v1/*.proto)

.PHONY: help build test test-short race run proto lint bench clean

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

bench: ## benchmarks beside the code and against a real aurad; see BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./internal/... | tee bench.txt
	$(GO) test -run '^$$' -bench SubmitStream -benchtime 20000x ./e2e | tee -a bench.txt

clean:
	rm -rf $(BIN) $(DATA)
