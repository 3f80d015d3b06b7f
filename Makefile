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

# Fuzz targets: the parts attackers touch, each with the number of runs
# `make test` gives it (about 5 s on these machines). Seed corpora are
# checked in under each package's testdata/fuzz/. `make test` fuzzes by
# count, not by time: Go 1.26's coordinator can fail a -fuzztime run at its
# deadline with "context deadline exceeded" and no input
# (golang/go#75804, fixed in Go 1.27); a count has no deadline to race.
FUZZ_TARGETS := FuzzVerify:./internal/jwks/:60000x FuzzParse:./internal/awsiam/:45000x FuzzCredentialsRequest:./internal/api/:50000x \
	FuzzRender:./internal/policy/:150000x FuzzRole:./internal/policy/:150000x FuzzDocument:./internal/revoke/:150000x
FUZZTIME ?= 1m

# Everything: lint, unit tests with the race detector, end-to-end tests, and
# a short run of each fuzz target. The end-to-end tests run after the unit
# tests, not beside them, and without the race detector (the binaries they
# start are built without it either way): their storms and outages measure
# the load they make themselves, through proxies of their own, which two
# cores busy with the race detector would drown.
test: tools lint
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)
	$(GO) test -count=1 ./e2e/
	$(MAKE) --no-print-directory python
	$(MAKE) --no-print-directory fuzz-quick

# The Python client's unit tests (its end-to-end scenarios run in ./e2e/).
.PHONY: python
python:
	cd clients/python && PYTHONPATH=.:tests python3 -m unittest discover -s tests

unit: tools lint
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)
	$(MAKE) --no-print-directory python

e2e: tools
	$(GO) test -count=1 -v ./e2e/

# Each target for FUZZTIME (make fuzz FUZZTIME=10m for a long run).
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; \
		echo "fuzz $$name for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

# Each target for its count of runs: the short fuzz of make test.
.PHONY: fuzz-quick
fuzz-quick:
	@for t in $(FUZZ_TARGETS); do \
		name=$${t%%:*}; rest=$${t#*:}; pkg=$${rest%%:*}; count=$${rest#*:}; \
		echo "fuzz $$name for $$count"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$$count $$pkg || exit 1; \
	done

# One table of ratios and counts measured in one run (see bench/main.go).
bench: tools
	$(GO) run ./bench

demo: tools build
	scripts/demo.sh

clean:
	rm -rf bin

# A few minutes of steady load over 1,000 tenants with valid, expired and
# forged tokens against the real binary; fails on any unexpected answer or
# when RSS or goroutines grow (see soak/main.go). `go run ./soak -h` for flags.
.PHONY: soak
soak:
	$(GO) run ./soak

.PHONY: image deploy-check

# The container image (needs a Docker engine with BuildKit).
image:
	docker build --build-arg VERSION=$(VERSION) -t tokenvendor:$(VERSION) .

# Render the kustomize overlays, lint the CloudFormation template and check
# every manifest; `make deploy-check UPDATE=-update` rewrites the golden files.
deploy-check:
	$(GO) test -count=1 ./deploy/ $(UPDATE)
