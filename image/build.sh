#!/usr/bin/env bash
# Builds the cloud-controller-manager image without a container engine (no Docker, no daemon):
# the release binary, the C libraries it links (glibc, libgcc_s), CA certificates and a
# non-root user (65532) go into one layer, FROM scratch, written by image/ocibuild (Go,
# go-containerregistry) as an OCI image layout and a tarball `docker load`/`podman load` read.
#
#   image/build.sh                       # release build, then image/out/{oci,cloud-controller-manager.tar}
#   image/build.sh --push REGISTRY/cloud-controller-manager:TAG   # also push (docker login's credentials)
#   image/build.sh --binary PATH         # package an existing binary (the test packages the debug one)
#
# Other options: --tag NAME:TAG (default cloud-controller-manager:<version>), --out DIR.
# The binary is linked against this machine's glibc (Debian 12 here), which goes into the image.
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
# A path given relative to where the command was run.
from_caller() { case "$1" in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }

binary="" tag="" push="" out="image/out"
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$(from_caller "$2"); shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --push) push=$2; shift 2 ;;
    --out) out=$(from_caller "$2"); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "image/build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$binary" ]; then
  echo "==> cargo build --release (~25 min the first time on 2 cores, about a minute after)"
  cargo build --release --locked -p cloud-controller-manager
  binary=${CARGO_TARGET_DIR:-target}/release/cloud-controller-manager
fi
[ -x "$binary" ] || { echo "image/build.sh: no binary at $binary" >&2; exit 1; }
version=$("$binary" --version | awk '{print $2}')
tag=${tag:-cloud-controller-manager:$version}

echo "==> the image's files ($binary, version $version)"
rootfs="$out/rootfs"
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
cp "$binary" "$rootfs/usr/local/bin/cloud-controller-manager"
strip "$rootfs/usr/local/bin/cloud-controller-manager" 2>/dev/null || true
# The shared libraries it needs, at the paths the dynamic loader looks in.
for lib in $(ldd "$binary" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'); do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"

echo "==> building image/ocibuild (Go; seconds once its modules are cached)"
tool=${OCIBUILD:-${CCM_CACHE_DIR:-$HOME/.cache/ccm}/bin/ocibuild}
mkdir -p "$(dirname "$tool")"
(cd image/ocibuild && go build -o "$tool" .)

echo "==> writing the image"
args=(-rootfs "$rootfs" -layout "$out/oci" -tar "$out/cloud-controller-manager.tar" -tag "$tag" -version "$version")
[ -z "$push" ] || args+=(-push "$push")
"$tool" "${args[@]}"
echo "load it with: docker load -i $out/cloud-controller-manager.tar (or podman load -i …)"
