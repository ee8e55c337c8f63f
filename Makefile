# Kavach: the two commands a new machine needs are `make run` and `make test`.
GO       ?= go
OUT      := build/out
PKGS     := ./...

.PHONY: run test bench build vet fmt-check fuzz clean

## run: serve the API on 127.0.0.1:8080 with the embedded SQLite database ./kavach.db
run:
	$(GO) run ./cmd/kavach serve

## build: build the kavach binary into build/out/
build:
	$(GO) build -trimpath -o $(OUT)/kavach ./cmd/kavach

## test: formatting, vet, and every test (unit, storage, API through the real server)
test: fmt-check vet
	$(GO) test -count=1 -timeout 15m $(PKGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

## bench: benchmarks for the hot paths (figures are printed), then the HTTP load test with wrk
bench:
	GOMAXPROCS=2 $(GO) test -run '^$$' -bench . -benchmem -cpu 2 -timeout 30m ./policy ./ ./api
	./build/bench-http.sh

## fuzz: run each fuzz target for a while (FUZZTIME=30s by default)
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzPatternMatch -fuzztime $(FUZZTIME) ./policy
	$(GO) test -run '^$$' -fuzz FuzzServe -fuzztime $(FUZZTIME) ./api

clean:
	rm -rf $(OUT)
