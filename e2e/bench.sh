#!/usr/bin/env bash
# The benchmark against upstream's aws-cloud-controller-manager (docs/performance.md): builds
# what the tests need (the apiserver harness, upstream's CCM, the moto virtualenv) as e2e/test.sh
# does, then runs every scenario with release builds and prints the ratio table.
set -euo pipefail
E2E_BENCH=1 exec "$(dirname "$0")/test.sh" "$@"
