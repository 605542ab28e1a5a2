# Fleetwire build, test and demo. `make test` and `make demo` install what
# they need (idempotently) on a fresh Debian machine with Go.
SHELL   := /bin/bash
TOOLS   := $(CURDIR)/.tools/bin
INFLUXD := $(TOOLS)/influxd
NFPM    := $(TOOLS)/nfpm
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
GO      ?= go
export FLEETWIRE_INFLUXD := $(INFLUXD)
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build dashboard tools debs test vet unit fuzz soak demo release bench clean

all: build

build: dashboard
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/...

## dashboard: the web app (npm + Vite + uPlot) into dashboard/dist, embedded by fleethub
dashboard:
	@dashboard/build.sh

## tools: InfluxDB 1.8.10 and nfpm 2.43.0 (Go builds from the module proxy) and Debian packages
tools: $(INFLUXD) $(NFPM) debs

$(INFLUXD):
	@echo ">> building influxd 1.8.10 into $(TOOLS) (first time only, a few minutes)"
	GOBIN=$(TOOLS) $(GO) install github.com/influxdata/influxdb/cmd/influxd@v1.8.10

# nfpm builds the .deb packages (make release, deploy/packaging_test.go);
# v2.48 does not build here (dependencies refused by the module proxy).
$(NFPM):
	GOBIN=$(TOOLS) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.43.0

debs:
	@scripts/install-debs.sh

vet:
	$(GO) vet ./...

## test: everything CI runs: vet, the whole suite with the race detector
## (integration tests start real influxd, real hubs and agents over loopback,
## arm builds under qemu), and the fuzz seed corpora.
test: tools dashboard vet
	$(GO) test -race -timeout 25m -count=1 ./...
	@echo ">> every fuzz target for a moment, on its committed corpus and seeds"
	@$(MAKE) --no-print-directory fuzz FUZZTIME=1000x

## fuzz: run every fuzz target for a while each (FUZZTIME, default 60s);
## `make test` runs each for 1000 inputs beyond its corpus (a count, not a
## duration: a short -fuzztime can end a run with "context deadline exceeded")
FUZZTIME ?= 60s
FUZZ_TARGETS := ./protocol:FuzzDecode ./protocol:FuzzDecodeBatchFast ./protocol/live:FuzzDecodeClient \
	./agent/collect:FuzzParseOutput ./hub/influx:FuzzLineProtocolMatchesClient \
	./hub/mqtt/payload:FuzzDecodeJSON ./hub/mqtt/payload:FuzzDecodeLine ./hub/mqtt/payload:FuzzDecodeSenMLJSON \
	./hub/mqtt/payload:FuzzDecodeSenMLCBOR ./hub/mqtt/payload:FuzzDecodeCBOR \
	./hub/mqtt/payload:FuzzEncodeJSON ./hub/mqtt:FuzzDecodeResult \
	./cmd/internal/config:FuzzLoad ./cmd/internal/config:FuzzParseByteSize
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo ">> $${t#*:} ($${t%%:*}, $(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) "$${t%%:*}"; \
	done

## soak: the fault-injection suite for SOAK_ROUNDS rounds of 10 s faults
## (default 10; `make test` runs one round of 2 s faults), then every fuzz
## target for SOAK_FUZZTIME (default 5m)
SOAK_ROUNDS ?= 10
SOAK_FUZZTIME ?= 5m
soak: tools
	FLEETWIRE_SOAK_ROUNDS=$(SOAK_ROUNDS) $(GO) test -run '^TestFaultInjection$$' -count=1 -timeout 4h -v ./cmd/internal/e2e
	$(MAKE) fuzz FUZZTIME=$(SOAK_FUZZTIME)

## demo: local InfluxDB + hub (auto TLS) + one agent on this machine
demo: tools build
	@scripts/demo.sh

## release: static, stripped, version-stamped binaries in dist/, and .deb
## packages: fleetagent for armhf (GOARM=6), arm64, amd64; fleethub for amd64, arm64
release: dashboard $(NFPM)
	@scripts/release.sh $(VERSION)
	@deploy/build-debs.sh $(VERSION) dist
	@(cd dist && sha256sum fleet* > SHA256SUMS) && ls -l dist/*.deb

## bench: the whole benchmark suite; writes BENCHMARKS.md and docs/bench/*.svg
## (COUNT=n runs each, default 3; ONLY=codec,wire,... reruns some sections)
bench: tools dashboard
	@scripts/bench.sh

clean:
	rm -rf bin dist .demo
