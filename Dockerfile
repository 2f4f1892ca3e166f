# syntax=docker/dockerfile:1
#
# Data Storage: one static binary on a distroless base, run as a non-root user.
#
#   docker build --build-arg VERSION=$(git describe --always --dirty) -t datastorage:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     -t ghcr.io/kubernaut-ai/datastorage:0.1.0 --push .
#
# The builder runs on the build machine's own platform and cross-compiles
# for the target (TARGETOS/TARGETARCH), so a multi-arch build needs no
# emulation. Pin the base images by digest (image@sha256:…) in a release
# pipeline; the tags below are the readable form.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
# The SDK is a module of its own that this one uses through a replace directive.
COPY client/go.mod client/go.sum client/
COPY client/clientmetrics/go.mod client/clientmetrics/go.sum client/clientmetrics/
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH CGO_ENABLED=0 \
    go build -trimpath \
      -ldflags="-s -w -X kubernaut.ai/datastorage/internal/version.Version=${VERSION}" \
      -o /out/datastorage ./cmd/datastorage

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="datastorage" \
      org.opencontainers.image.description="Kubernaut Data Storage: the platform's audit-trail store" \
      org.opencontainers.image.source="https://github.com/kubernaut-ai/datastorage" \
      org.opencontainers.image.documentation="https://github.com/kubernaut-ai/datastorage/blob/main/docs/operations.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Kubernaut"
COPY --from=build /out/datastorage /usr/local/bin/datastorage
# distroless's nonroot user; the Kubernetes manifests run as the same id.
USER 65532:65532
# API (server.port) and metrics (server.metricsPort).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/datastorage"]
CMD ["serve"]
