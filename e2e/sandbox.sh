#!/usr/bin/env bash
# The sandbox (README "Try it"): builds what it needs, then starts a real kube-apiserver,
# registers Nodes, runs cloud-controller-manager against them, applies an example
# LoadBalancer Service and shows what happens until Ctrl-C. Options: see `--help`.
#
# The builds run side by side (the Go harness and the moto virtualenv in the background, the
# Rust binaries in front, with cargo's progress), each saying when it is ready; on 2 cores the
# first run takes the minutes the README states, later ones seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# Job control: each background build in its own process group, which the trap stops whole
# (a Ctrl-C or a failed cargo build leaves no `go build` or pip running).
set -m
logs=$(mktemp -d)
pids=()
source e2e/jobs.sh
trap 'stop_background; rm -rf "$logs"' EXIT

begin=$SECONDS
echo "==> building, side by side (the first time on 2 cores about 20 min in all: the Rust binaries"
echo "    ~20 min, the apiserver harness ~16 min alongside; a second or two after that):"
echo "    - the kube-apiserver harness (e2e/apiserver, Go; in the background)"
background "the apiserver harness" e2e/apiserver/hack/build.sh
# The AWS emulator (skipped when E2E_AWS_ENDPOINT names one already running).
if [ -z "${E2E_AWS_ENDPOINT:-}" ]; then
  echo "    - the moto virtualenv (e2e/moto, PyPI; in the background, ~3 min)"
  background "the moto virtualenv" e2e/moto/setup.sh
fi
echo "    - cloud-controller-manager and the sandbox (cargo; its progress below)"
start=$SECONDS
cargo build --locked -p cloud-controller-manager -p ccm-e2e --bins
echo "    the Rust binaries ready in $((SECONDS - start)) s"
wait_background
echo "==> built in $((SECONDS - begin)) s"

rm -rf "$logs"
trap - EXIT
set +m
target_dir=${CARGO_TARGET_DIR:-target}
exec "$target_dir/debug/sandbox" "$@"
