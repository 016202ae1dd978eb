#!/usr/bin/env bash
# The project's test command (README "Run the tests"): installs what the tests need from the
# project's own files, then runs every unit and end-to-end test.
#
#   1. in the background: builds the kube-apiserver harness (e2e/apiserver), upstream's
#      aws-cloud-controller-manager, the parity tests' oracle (e2e/upstream), and kustomize
#      (Go; the Go build cache makes a rebuild take seconds), and creates the moto virtualenv
#      (e2e/moto; skipped when it already holds the pinned versions)
#   2. meanwhile: compiles every test (cargo test --no-run): on a cold machine the Go and the
#      Rust builds overlap instead of adding up
#   3. cargo test --workspace: unit tests, and e2e tests that start the harness, moto and the
#      CCMs themselves, and stop them when the test binary exits
#   4. the whole suite only: the sandbox (e2e/sandbox.sh) in a pseudo-terminal, stopped with
#      Ctrl-C (e2e/sandbox_ctrl_c.py), and the image check (image/test.py)
#
# Environment: CARGO_TARGET_DIR and MOTO_VENV may point at caches outside the clone.
# E2E_BENCH=1 (e2e/bench.sh): steps 2 and 3 become the benchmark against upstream instead
# (cargo bench, a release build; docs/performance.md).
# E2E_AWS_ENDPOINT (+ E2E_AWS_FLAVOR=localstack) aims the tests at an emulator already running.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

logs=$(mktemp -d)
pids=()
source e2e/jobs.sh
trap 'stop_background; rm -rf "$logs"' EXIT

go_tools() {
  e2e/apiserver/hack/build.sh
  e2e/upstream/build.sh
  # Pinned (v5.8.0: later ones need Go 1.27); `go install` builds it from the module proxy.
  [ -x e2e/bin/kustomize ] || GOBIN="$PWD/e2e/bin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.0
}

step "building in the background: the apiserver harness, upstream's CCM (the parity oracle) and kustomize (Go; ~20 min the first time, seconds after), and the moto virtualenv"
background "go-tools" go_tools
if [ -z "${E2E_AWS_ENDPOINT:-}" ]; then
  background "moto" e2e/moto/setup.sh
fi

if [ -z "${E2E_BENCH:-}" ]; then
  step "compiling the tests (cargo; ~15 min the first time)"
  start=$SECONDS
  cargo test --workspace --locked --no-run "$@" 2>&1 | grep -v '^\s*Executable ' || { echo "cargo build failed"; exit 1; }
  echo "compiled in $((SECONDS - start)) s"
else
  step "compiling the benchmark (cargo, release build; ~25 min the first time)"
  start=$SECONDS
  cargo bench -p cloud-controller-manager --bench versus_upstream --locked --no-run "$@" 2>&1 || { echo "cargo build failed"; exit 1; }
  echo "compiled in $((SECONDS - start)) s"
fi

step "waiting for the background builds"
wait_background

if [ -z "${E2E_BENCH:-}" ]; then
  step "cargo test --workspace"
  cargo test --workspace --locked "$@"
  # Only for the whole suite on moto (a run narrowed with cargo arguments, or aimed at another
  # emulator, skips it).
  if [ $# -eq 0 ] && [ -z "${E2E_AWS_ENDPOINT:-}" ]; then
    step "the sandbox in a pseudo-terminal, stopped with Ctrl-C as a person does (e2e/sandbox_ctrl_c.py; ~1 min)"
    python3 e2e/sandbox_ctrl_c.py > "$logs/sandbox.log" 2>&1 || { cat "$logs/sandbox.log"; exit 1; }
    tail -n 1 "$logs/sandbox.log"
  fi
  if [ $# -eq 0 ]; then
    step "the image: built without a container engine from the debug binary, then read back and run as 65532 (image/test.py; seconds)"
    python3 image/test.py
  fi
else
  step "the benchmark: upstream, then ours, on the same ground (a few minutes each)"
  cargo bench -p cloud-controller-manager --bench versus_upstream --locked "$@"
fi
