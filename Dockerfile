# syntax=docker/dockerfile:1

# ---- build ----------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
# sqlx checks its queries against the committed .sqlx/ metadata instead of a live database.
ENV SQLX_OFFLINE=true
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin ferry \
 && cp target/release/ferry /usr/local/bin/ferry

# ---- runtime --------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# postgresql provides initdb/pg_ctl/postgres for the embedded cluster used when DATABASE_URL is unset.
# Debian would create and start its own "main" cluster on install; ferry does not need it.
RUN mkdir -p /etc/postgresql-common/createcluster.d \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/ferry.conf \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates postgresql \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/lib/postgresql/*/bin/initdb /usr/lib/postgresql/*/bin/pg_ctl \
          /usr/lib/postgresql/*/bin/postgres /usr/local/bin/ \
 && useradd --system --create-home --home-dir /var/lib/ferry --shell /usr/sbin/nologin ferry

COPY --from=builder /usr/local/bin/ferry /usr/local/bin/ferry

ENV FERRY_LISTEN=0.0.0.0:8080 \
    FERRY_DATA_DIR=/var/lib/ferry
USER ferry
WORKDIR /var/lib/ferry
# Embedded cluster and generated encryption key live here.
VOLUME /var/lib/ferry
EXPOSE 8080
ENTRYPOINT ["ferry"]
CMD ["serve"]
