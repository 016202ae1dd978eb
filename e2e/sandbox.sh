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

logs=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$logs"' EXIT

# Runs "$@" in the background, its output in $logs/<name>.log; says when it is done.
background() {
  local name=$1
  shift
  (
    start=$SECONDS
    if "$@" >"$logs/$name.log" 2>&1; then
      echo "    $name ready in $((SECONDS - start)) s"
    else
      echo "    $name FAILED after $((SECONDS - start)) s; its output:"
      sed 's/^/      /' "$logs/$name.log"
      exit 1
    fi
  ) &
  pids+=($!)
}

begin=$SECONDS
echo "==> building, side by side (the first time on 2 cores: ~12 min for the apiserver harness, Go,"
echo "    ~15 min for the Rust binaries, cargo; seconds after that):"
echo "    - the kube-apiserver harness (e2e/apiserver, Go; in the background)"
background "the apiserver harness" e2e/apiserver/hack/build.sh
# The AWS emulator (skipped when E2E_AWS_ENDPOINT names one already running).
if [ -z "${E2E_AWS_ENDPOINT:-}" ]; then
  echo "    - the moto virtualenv (e2e/moto, PyPI; in the background, ~1 min)"
  background "the moto virtualenv" e2e/moto/setup.sh
fi
echo "    - cloud-controller-manager and the sandbox (cargo; its progress below)"
start=$SECONDS
cargo build --locked -p cloud-controller-manager -p ccm-e2e --bins
echo "    the Rust binaries ready in $((SECONDS - start)) s"
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
pids=()
[ "$failed" = 0 ] || { echo "a build failed (above)"; exit 1; }
echo "==> built in $((SECONDS - begin)) s"

rm -rf "$logs"
trap - EXIT
target_dir=${CARGO_TARGET_DIR:-target}
exec "$target_dir/debug/sandbox" "$@"
