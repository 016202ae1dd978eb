#!/usr/bin/env bash
# The project's test command (README "Run the tests"): installs what the tests need from the
# project's own files, then runs every unit and end-to-end test.
#
#   1. builds the kube-apiserver harness (e2e/apiserver; Go's build cache makes a rebuild fast)
#   2. builds upstream's aws-cloud-controller-manager, the parity tests' oracle (e2e/upstream)
#   3. creates the moto virtualenv (e2e/moto; skipped when it already holds the pinned versions)
#   4. cargo test --workspace: unit tests, and e2e tests that start the harness and moto
#      themselves, one of each per test binary, and stop them when the binary exits
#
# Environment: CARGO_TARGET_DIR and MOTO_VENV may point at caches outside the clone.
# E2E_AWS_ENDPOINT (+ E2E_AWS_FLAVOR=localstack) aims the tests at an emulator already running.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "building the kube-apiserver harness"
start=$SECONDS
e2e/apiserver/hack/build.sh
echo "harness ready in $((SECONDS - start)) s"

step "building upstream's aws-cloud-controller-manager (the parity oracle)"
start=$SECONDS
e2e/upstream/build.sh
echo "oracle ready in $((SECONDS - start)) s"

step "installing kustomize (for the manifest tests)"
# Pinned (v5.8.0: later ones need Go 1.27); `go install` builds it from the module proxy.
[ -x e2e/bin/kustomize ] || GOBIN="$PWD/e2e/bin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.8.0

if [ -z "${E2E_AWS_ENDPOINT:-}" ]; then
  step "installing the moto AWS emulator"
  start=$SECONDS
  e2e/moto/setup.sh
  echo "moto ready in $((SECONDS - start)) s"
fi

step "cargo test --workspace"
cargo test --workspace --locked "$@"
