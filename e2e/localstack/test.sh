#!/usr/bin/env bash
# The LocalStack check (run by .ci/run after the test command): on LocalStack Community, started
# on the host by run.sh, the EC2 end-to-end tests pass (the load-balancer ones say SKIPPED), the
# sandbox initializes and routes its Nodes with --service none and deletes the VPC it seeded,
# and the sandbox with a Service stops at once with one line saying the emulator has no ELB.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${E2E_AWS_ENDPOINT:-}" ]; then
  exec e2e/localstack/run.sh "$PWD/e2e/localstack/test.sh"
fi

echo "==> the EC2 end-to-end tests on LocalStack"
e2e/test.sh -p cloud-controller-manager --test aws_nodes -p ccm-e2e --test ground

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "==> the sandbox on LocalStack, --service none"
e2e/sandbox.sh --service none --until-ready 120 >"$out" 2>&1 || { cat "$out"; exit 1; }
grep -E "^sandbox: ready|^==> deleted the seeded VPC" "$out"
[ "$(grep -cE "^sandbox: ready|^==> deleted the seeded VPC" "$out")" = 2 ] || { cat "$out"; exit 1; }

echo "==> the sandbox on LocalStack with a Service: one line, no backtrace"
if e2e/sandbox.sh --until-ready 60 >"$out" 2>&1; then
  cat "$out"; echo "the sandbox made a load balancer on an emulator without ELB?"; exit 1
fi
grep "does not serve the ELB API" "$out" || { cat "$out"; exit 1; }
if grep -qE "backtrace|panicked|^ +[0-9]+: " "$out"; then cat "$out"; exit 1; fi
echo "LocalStack check passed"
