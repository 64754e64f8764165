# syntax=docker/dockerfile:1
#
# The `weir` image: one binary for every command (`weir run`, `weir operator`, `weir demo`, ...).
#
#   docker build -t weir:0.1.0 .
#
# Build stage: the workspace's release build. The dashboard crate's build script runs
# `npm ci` in crates/weir-dashboard/web to fetch uPlot (pinned by its lockfile), so the
# builder needs Node.js and npm, and network access to the npm registry.
FROM rust:1-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# .dockerignore lets in only what the build reads: manifests, lockfile, crates, xtask (a
# workspace member), and the files embedded at compile time (scenarios/demo.toml,
# deploy/weir.example.toml). No models: a Q-learning model comes from a ConfigMap
# (ReadSplit spec.policy.modelConfigMap) or a mounted file (`weir run`).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p weir \
    && install -D -m 0755 target/release/weir /out/weir

# Runtime stage: distroless `cc` (glibc and libgcc, which the binary links; CA certificates;
# no shell, no package manager) in its `nonroot` variant, user and group 65532 — the ids the
# Kubernetes manifests require with runAsNonRoot. The binary writes nothing to its filesystem,
# so the root filesystem can be read-only.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/weir /usr/local/bin/weir
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["--help"]
