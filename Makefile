# bb: bottles for coding agents. `make build` puts every command and the bb
# wrapper in ./bin; `make test` runs every test.
PREFIX    ?= $(HOME)/.local
GO        ?= go
BIN       := bin
CMDS      := $(notdir $(wildcard cmd/bb-*))
STATICCHECK_VERSION ?= v0.6.1

.PHONY: all build install sidecar upstream images base-image demo test darwin bench fuzz lint fmt clean

all: build

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...
	install -m 0755 scripts/bb $(BIN)/bb

GOARCH    ?= $(shell $(GO) env GOARCH)
SHARE     := $(PREFIX)/share/bb
LINUX_GO  := CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -buildvcs=false -ldflags='-s -w'

# Everything works from $(PREFIX) without this checkout: the commands, the
# sidecar's static linux bb-egress beside them (bb-launch looks there), and
# the demo's kit in $(SHARE) (the demo, its upstream server, the example
# manifest, the base image's script), which `bb demo` finds from bb's folder.
install: build sidecar upstream
	@mkdir -p $(PREFIX)/bin $(SHARE)/examples
	for f in $(CMDS) bb bb-egress-linux-$(GOARCH); do install -m 0755 $(BIN)/$$f $(PREFIX)/bin/$$f; done
	install -m 0755 scripts/demo scripts/base-image $(BIN)/bb-upstream-linux-$(GOARCH) $(SHARE)/
	install -m 0644 examples/bb.yaml $(SHARE)/examples/bb.yaml

# The sidecar image is FROM scratch: its bb-egress must be a static Linux
# binary, cross-compiled where the host is not Linux.
sidecar:
	@mkdir -p $(BIN)
	$(LINUX_GO) -o $(BIN)/bb-egress-linux-$(GOARCH) ./cmd/bb-egress

# The demo's stand-in for the internet, in an image FROM scratch too.
upstream:
	@mkdir -p $(BIN)
	$(LINUX_GO) -o $(BIN)/bb-upstream-linux-$(GOARCH) ./scripts/upstream

images: base-image sidecar

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
