# The meshgate binary with the reference mesh's manifests and policies. By default it runs
# `meshgate demo` (its own in-process S3 lakes in /data); docker-compose.yml runs
# `meshgate serve --config /etc/meshgate/meshgate.toml` against MinIO instead.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p meshgate-cli --bin meshgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/meshgate /usr/local/bin/meshgate
COPY products /usr/share/meshgate/products
COPY policies /usr/share/meshgate/policies
COPY deploy/meshgate.toml /etc/meshgate/meshgate.toml
EXPOSE 50051
VOLUME /data
ENTRYPOINT ["meshgate"]
CMD ["demo", "--listen", "0.0.0.0:50051", "--data-dir", "/data"]
