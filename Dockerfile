# syntax=docker/dockerfile:1
# tokenvendor: a static binary on distroless, running as non-root.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t tokenvendor .
#   docker run -v $PWD/config.yaml:/etc/tokenvendor/config.yaml:ro -p 8080:8080 tokenvendor
# The config must listen on 0.0.0.0:8080 to be reachable from outside the
# container; the health check asks 127.0.0.1:8080/readyz either way.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd ./cmd
COPY internal ./internal
COPY client ./client
COPY wire ./wire
ARG TARGETOS TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tokenvendor ./cmd/tokenvendor

# static-debian12 carries CA certificates and tzdata, and nothing to run a
# shell with.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokenvendor /tokenvendor
# nonroot, numerically, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/tokenvendor", "healthcheck"]
ENTRYPOINT ["/tokenvendor"]
CMD ["serve", "--config", "/etc/tokenvendor/config.yaml"]
