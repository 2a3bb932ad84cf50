# bb: bottles for coding agents. `make build` puts every command and the bb
# wrapper in ./bin; `make test` runs every test.
PREFIX    ?= $(HOME)/.local
GO        ?= go
BIN       := bin
CMDS      := $(notdir $(wildcard cmd/bb-*))
STATICCHECK_VERSION ?= 2025.1.1

.PHONY: all build install images base-image demo test darwin bench fuzz lint fmt clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...
	install -m 0755 scripts/bb $(BIN)/bb

install: build
	@mkdir -p $(PREFIX)/bin
	for f in $(CMDS) bb; do install -m 0755 $(BIN)/$$f $(PREFIX)/bin/$$f; done

GOARCH    ?= $(shell $(GO) env GOARCH)

# The sidecar image is FROM scratch: its bb-egress must be a static Linux
# binary, cross-compiled where the host is not Linux.
images: base-image
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -buildvcs=false -ldflags='-s -w' \
		-o $(BIN)/bb-egress-linux-$(GOARCH) ./cmd/bb-egress

# The offline Debian base for agent images (debootstrap + docker import);
# does nothing when bb-base:bookworm exists.
base-image:
	scripts/base-image

# The offline demo, the README's first command: a bottle, an allowed request,
# a denied one, a blocked canary, the audit log, a snapshot and a resume.
demo:
	@scripts/demo

# -count=1: the end-to-end tests build the commands themselves, which Go's
# test cache cannot see.
test: base-image
	$(GO) test -count=1 -timeout 20m ./...

# bb builds where its users are: every package, and every test binary, for
# macOS too (-exec true builds the tests without running them).
darwin:
	GOOS=darwin $(GO) vet ./...
	GOOS=darwin $(GO) test -exec true -run '^$$' ./... >/dev/null

bench:
	@scripts/bench

fuzz:
	$(GO) test ./lib/manifest -run '^$$' -fuzz FuzzLoad -fuzztime 30s
	$(GO) test ./lib/detect -run '^$$' -fuzz FuzzDetect -fuzztime 30s

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	@if command -v shellcheck >/dev/null; then shellcheck scripts/bb scripts/bench scripts/base-image scripts/demo; fi

fmt:
	gofmt -w cmd lib

clean:
	rm -rf $(BIN)
