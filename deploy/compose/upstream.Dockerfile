# syntax=docker/dockerfile:1
#
# The example orders API (examples/orders-upstream, binary `orders-upstream`)
# for the docker compose quickstart. deploy/container/Dockerfile builds only
# the gateway, so this file builds the example the same way: same builder
# image, same workspace copy, same cache mounts, same distroless runtime.
# Build from the repository root (compose.yaml sets the context to ../..):
#
#     docker build -f deploy/compose/upstream.Dockerfile -t portcullis-orders-upstream .
#
# Not for production: the example keeps its orders in memory and trusts
# whoever reaches it. In compose only the gateway can (the `backend` network).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# --- build ------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder

# The example does not need cmake, but this layer is then the same as the
# gateway's builder's, so BuildKit builds it once for both images.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Every workspace member must be present for cargo to load the workspace.
COPY Cargo.toml Cargo.lock ./
COPY gateway/ gateway/
COPY examples/orders-upstream/ examples/orders-upstream/
COPY benches/ benches/
COPY xtask/ xtask/

RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p portcullis-example-upstream --bin orders-upstream \
 && install -D -m 0755 target/release/orders-upstream /out/usr/local/bin/orders-upstream

# --- runtime ----------------------------------------------------------------
FROM ${RUNTIME_IMAGE}

COPY --from=builder /out/usr/local/bin/orders-upstream /usr/local/bin/orders-upstream

# nonroot:nonroot in distroless, as in the gateway's image.
USER 65532:65532

# --listen: the default 127.0.0.1:8081 would be unreachable from the gateway.
EXPOSE 8081

# The binary stops on SIGINT (Ctrl-C) only; compose.yaml sets stop_signal.
STOPSIGNAL SIGINT

ENTRYPOINT ["/usr/local/bin/orders-upstream"]
CMD ["--listen", "0.0.0.0:8081"]
