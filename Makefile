# tokenvendor: `make demo` shows it working, `make test` proves it.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build tools lint test unit e2e fuzz bench demo clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/tokenvendor ./cmd/tokenvendor

tools:
	scripts/tools.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Everything: lint, unit tests and end-to-end tests with the race detector,
# and a short fuzz run of the policy renderer.
test: tools lint
	$(GO) test -race -count=1 ./...
	$(GO) test -run='^$$' -fuzz=FuzzRender -fuzztime=10s ./internal/policy/

unit: lint
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e: tools
	$(GO) test -race -count=1 -v ./e2e/

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzRender -fuzztime=2m ./internal/policy/

# One table of ratios and counts measured in one run (see bench/main.go).
bench: tools
	$(GO) run ./bench

demo: tools build
	scripts/demo.sh

clean:
	rm -rf bin
