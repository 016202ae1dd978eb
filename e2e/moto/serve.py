"""Runs moto's server on 127.0.0.1 for the end-to-end tests.

Prints "READY <endpoint>" once an EC2 call answers 200 (moto loads its backends lazily, so
merely accepting connections is not ready), then serves until SIGTERM/SIGINT or, with
--exit-on-stdin-close, until stdin reaches EOF: the test process that spawned it holds the
other end of the pipe, so the server never outlives it, even when that process is killed.
"""

import argparse
import signal
import sys
import threading
import time
import urllib.request

from moto.server import ThreadedMotoServer

import fidelity

READY_PROBE = b"Action=DescribeAvailabilityZones&Version=2016-11-15"
PROBE_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, "
    "SignedHeaders=host, Signature=x",
}


def wait_ready(endpoint: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(endpoint + "/", data=READY_PROBE, headers=PROBE_HEADERS)
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.1)
    raise SystemExit(f"moto not ready within {limit}s: {last}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--exit-on-stdin-close", action="store_true")
    args = parser.parse_args()

    fidelity.apply()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{args.port}"
    wait_ready(endpoint, 60)
    print(f"READY {endpoint}", flush=True)

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    if args.exit_on_stdin_close:
        def watch_stdin() -> None:
            sys.stdin.buffer.read()
            done.set()

        threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    server.stop()


if __name__ == "__main__":
    main()
