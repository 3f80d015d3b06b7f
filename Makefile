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

# Fuzz targets: the parts attackers touch. Seed corpora are checked in
# under each package's testdata/fuzz/.
FUZZ_TARGETS := FuzzVerify:./internal/jwks/ FuzzParse:./internal/awsiam/ FuzzCredentialsRequest:./internal/api/ FuzzRender:./internal/policy/ FuzzRole:./internal/policy/ FuzzDocument:./internal/revoke/
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
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s

# The Python client's unit tests (its end-to-end scenarios run in ./e2e/).
.PHONY: python
python:
	cd clients/python && PYTHONPATH=.:tests python3 -m unittest discover -s tests

unit: tools lint
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)
	$(MAKE) --no-print-directory python

e2e: tools
	$(GO) test -count=1 -v ./e2e/

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run='^$$' -fuzz="^$${t%%:*}$$" -fuzztime=$(FUZZTIME) $${t##*:} || exit 1; \
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
