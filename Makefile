# bb: bottles for coding agents. `make build` puts every command and the bb
# wrapper in ./bin; `make test` runs every test.
PREFIX    ?= $(HOME)/.local
GO        ?= go
BIN       := bin
CMDS      := $(notdir $(wildcard cmd/bb-*))
STATICCHECK_VERSION ?= 2025.1.1

.PHONY: all build install test test-short bench fuzz lint fmt clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...
	install -m 0755 scripts/bb $(BIN)/bb

install: build
	@mkdir -p $(PREFIX)/bin
	for f in $(CMDS) bb; do install -m 0755 $(BIN)/$$f $(PREFIX)/bin/$$f; done

test:
	$(GO) test -count=1 -timeout 20m ./...

bench:
	@scripts/bench

fuzz:
	$(GO) test ./lib/manifest -run '^$$' -fuzz FuzzLoad -fuzztime 30s
	$(GO) test ./lib/detect -run '^$$' -fuzz FuzzDetect -fuzztime 30s

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	@if command -v shellcheck >/dev/null; then shellcheck scripts/bb scripts/bench; fi

fmt:
	gofmt -w cmd lib

clean:
	rm -rf $(BIN)
