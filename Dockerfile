# A small, non-root image of cloud-controller-manager, for people with Docker. Without a
# container engine, image/build.sh makes the same image (README "The image"); CI builds that.
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
