# The meshgate binary. By default it serves the reference mesh from a local lake in /data;
# the S3 issue points it at MinIO through configuration (see docker-compose.yml).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p meshgate --bin meshgate

FROM debian:bookworm-slim
COPY --from=build /src/target/release/meshgate /usr/local/bin/meshgate
EXPOSE 50051
VOLUME /data
ENTRYPOINT ["meshgate"]
CMD ["demo", "--listen", "0.0.0.0:50051", "--data-dir", "/data"]
