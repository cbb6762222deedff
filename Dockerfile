# syntax=docker/dockerfile:1.7
# The meshgate binary with the reference mesh's manifests and policies. By default it runs
# `meshgate demo` (its own in-process S3 lakes in /data); docker-compose.yml runs
# `meshgate serve --config /etc/meshgate/meshgate.toml` against MinIO instead.
#
# Dependencies are cached across builds with BuildKit cache mounts (the registry and the
# target directory), so a change to meshgate's own code recompiles meshgate only.
FROM rust:1.95-bookworm AS build
# protoc generates the Substrait crate's code at build time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p meshgate-cli --bin meshgate \
    && cp target/release/meshgate /usr/local/bin/meshgate

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin meshgate \
    && mkdir -p /data \
    && chown meshgate:meshgate /data
COPY --from=build /usr/local/bin/meshgate /usr/local/bin/meshgate
COPY products /usr/share/meshgate/products
COPY policies /usr/share/meshgate/policies
COPY deploy/meshgate.toml /etc/meshgate/meshgate.toml
# Never root: the gateway needs to write only its state (and the demo's lakes) under /data.
USER meshgate
EXPOSE 50051 9464
VOLUME /data
# A Flight round trip to the gateway itself (answering, even with a refusal, is healthy).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["meshgate", "health", "--server", "127.0.0.1:50051"]
ENTRYPOINT ["meshgate"]
CMD ["demo", "--listen", "0.0.0.0:50051", "--data-dir", "/data"]
