#!/usr/bin/env bash
# The sandbox (README "Try it"): builds what it needs, then starts a real kube-apiserver,
# registers Nodes, runs cloud-controller-manager against them, applies an example
# LoadBalancer Service and shows what happens until Ctrl-C. Options: see `--help`.
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/apiserver/hack/build.sh
# The AWS emulator (skipped when E2E_AWS_ENDPOINT names one already running).
[ -n "${E2E_AWS_ENDPOINT:-}" ] || e2e/moto/setup.sh
cargo build --quiet --locked -p cloud-controller-manager -p ccm-e2e --bins
target_dir=${CARGO_TARGET_DIR:-target}
exec "$target_dir/debug/sandbox" "$@"
