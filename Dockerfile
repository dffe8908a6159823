# The webhook and operator images, from one Dockerfile, as static binaries on a
# minimal base: non-root numeric UID, nothing but the binary, fit for a read-only
# root filesystem.
#
# A registry build (compiles inside the Rust image):
#   DOCKER_BUILDKIT=1 docker build --target webhook  -t <registry>/commerce-webhook:0.1.0 .
#   DOCKER_BUILDKIT=1 docker build --target operator -t <registry>/operator:0.1.0 .
# An offline build from binaries compiled on the host (what scripts/build-images.sh
# does; nothing is pulled):
#   --build-arg BINARIES=prebuilt --build-arg BASE_IMAGE=scratch, with the binaries in
#   the build context's bin/ folder.
# BuildKit builds only the stages the target needs, so the offline build never
# touches the Rust image. For a build that cannot change under you, pass both base
# images by digest (--build-arg BASE_IMAGE=...@sha256:..., RUST_IMAGE likewise) and
# install the chart with image.digest (docs/security/supply-chain.md).
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot
ARG BINARIES=compile
ARG RUST_IMAGE=docker.io/library/rust:1-bookworm

FROM ${RUST_IMAGE} AS compile
WORKDIR /src
COPY . .
# The release profile (Cargo.toml), linked statically so the image needs no libc.
RUN CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --release --target x86_64-unknown-linux-gnu \
      -p commerce-webhook -p commerce-webhook-operator --bins \
 && mkdir /out \
 && cp target/x86_64-unknown-linux-gnu/release/commerce-webhook \
       target/x86_64-unknown-linux-gnu/release/commerce-webhook-operator /out/

FROM scratch AS prebuilt
COPY bin/commerce-webhook bin/commerce-webhook-operator /out/

FROM ${BINARIES} AS binaries

FROM ${BASE_IMAGE} AS webhook
COPY --from=binaries /out/commerce-webhook /usr/local/bin/commerce-webhook
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/commerce-webhook"]

FROM ${BASE_IMAGE} AS operator
COPY --from=binaries /out/commerce-webhook-operator /usr/local/bin/commerce-webhook-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/commerce-webhook-operator"]
