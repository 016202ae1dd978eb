# A small, non-root image of cloud-controller-manager. (These build machines have no Docker
# engine; this file is kept simple and is not built by CI.)
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p cloud-controller-manager \
 && strip target/release/cloud-controller-manager

# distroless: CA certificates and glibc, no shell, uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/cloud-controller-manager /usr/local/bin/cloud-controller-manager
USER 65532:65532
EXPOSE 10258
ENTRYPOINT ["/usr/local/bin/cloud-controller-manager"]
