# Multi-stage build: compile with the Rust toolchain, run on a slim Debian.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin chex

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/chex /usr/local/bin/chex
USER nobody
EXPOSE 8080
ENTRYPOINT ["chex"]
CMD ["serve"]
