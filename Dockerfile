# Images for the webhook and the operator, from one build:
#   docker build --target webhook  -t ghcr.io/commerce-webhook-operator/commerce-webhook:0.1.0 .
#   docker build --target operator -t ghcr.io/commerce-webhook-operator/operator:0.1.0 .
# (These names and tags are what the operator and the Helm chart default to. No
# image is published yet, and this project's CI machines cannot run Docker: build
# and push them to your registry, then set the chart's image values.)
FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The workspace has one profile (dev, fully optimised); strip its line tables.
RUN cargo build --locked -p commerce-webhook -p commerce-webhook-operator --bins \
 && mkdir /out \
 && cp target/debug/commerce-webhook target/debug/commerce-webhook-operator /out/ \
 && strip /out/*

# distroless: glibc and CA certificates, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot AS webhook
COPY --from=build /out/commerce-webhook /usr/local/bin/commerce-webhook
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/commerce-webhook"]

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /out/commerce-webhook-operator /usr/local/bin/commerce-webhook-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/commerce-webhook-operator"]
