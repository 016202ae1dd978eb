#!/usr/bin/env bash
# Starts LocalStack Community on the host (no Docker; e2e/localstack/setup.sh makes its Python
# 3.13 virtualenv), then runs the given command aimed at it, and stops LocalStack after:
#
#   e2e/localstack/run.sh e2e/sandbox.sh --service none     # the sandbox on LocalStack
#   e2e/localstack/run.sh e2e/test.sh -p cloud-controller-manager --test aws_nodes
#   e2e/localstack/run.sh                                    # just LocalStack, until Ctrl-C
#
# The command gets E2E_AWS_ENDPOINT (LocalStack's URL) and E2E_AWS_FLAVOR=localstack. LocalStack
# Community serves EC2 (moto underneath) but not ELB or ELBv2 (501). Its state lives in a
# temporary directory and goes with it. LOCALSTACK_PORT picks the port (default 4566).
set -euo pipefail
cd "$(dirname "$0")/../.."

export LOCALSTACK_VENV=${LOCALSTACK_VENV:-$PWD/e2e/localstack/.venv}
echo "==> the LocalStack virtualenv ($LOCALSTACK_VENV; a few minutes the first time)"
e2e/localstack/setup.sh

port=${LOCALSTACK_PORT:-4566}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "port $port is taken (another LocalStack?): stop it or set LOCALSTACK_PORT" >&2
  exit 1
fi
state=$(mktemp -d)
mkdir -p "$state/tmp"
log=$state/localstack.log
echo "==> starting LocalStack on 127.0.0.1:$port (log: $log)"
# Its own session: a Ctrl-C in the terminal reaches the command below, which may still need
# LocalStack to clean up, and not LocalStack itself.
# GATEWAY_SERVER=hypercorn: the default gateway listens on every interface whatever
# GATEWAY_LISTEN says; DNS_ADDRESS=0: no DNS server on port 53; the directories keep its state
# out of ~/.localstack and the system temp dir.
GATEWAY_LISTEN=127.0.0.1:$port GATEWAY_SERVER=hypercorn DNS_ADDRESS=0 \
  LOCALSTACK_VOLUME_DIR=$state/volume TMPDIR=$state/tmp CONFIG_DIR=$state/config \
  XDG_CACHE_HOME=$state/cache DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 \
  setsid "$LOCALSTACK_VENV/bin/python" -m localstack.runtime.main >"$log" 2>&1 &
pid=$!
stop() {
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$state"
}
trap stop EXIT

endpoint=http://127.0.0.1:$port
for _ in $(seq 120); do
  if curl -sf "$endpoint/_localstack/health" >/dev/null 2>&1; then break; fi
  kill -0 "$pid" 2>/dev/null || { echo "LocalStack exited; its log:" >&2; tail -n 30 "$log" >&2; exit 1; }
  sleep 0.5
done
curl -sf "$endpoint/_localstack/health" >/dev/null || { echo "LocalStack not ready after 60 s; see $log" >&2; exit 1; }
echo "    ready: $endpoint"

export E2E_AWS_ENDPOINT=$endpoint E2E_AWS_FLAVOR=localstack
if [ $# -eq 0 ]; then
  echo "E2E_AWS_ENDPOINT=$endpoint E2E_AWS_FLAVOR=localstack; Ctrl-C stops it"
  trap 'exit 0' INT
  while kill -0 "$pid" 2>/dev/null; do sleep 1; done
  echo "LocalStack exited; its log: $log" >&2
  exit 1
fi
"$@"
