"""Runs the sandbox the way a person does and presses Ctrl-C: `e2e/sandbox.sh` in a real
pseudo-terminal (the terminal's line discipline turns the Ctrl-C byte into SIGINT for the
foreground process group), waits until everything is up, sends Ctrl-C, and checks that the
sandbox deleted its Service, left no load balancer, printed no error or backtrace, exited 0,
and left none of the processes it started running.

Usage: python3 e2e/sandbox_ctrl_c.py [--timeout SECONDS]   (exit 0: passed)
"""

import argparse
import os
import pty
import re
import select
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UP = "==> everything is up"
ERRORS = re.compile(r"^Error:|panicked|stack backtrace|connection closed", re.MULTILINE)


def in_session(session: int) -> dict:
    """The processes of `session` (the sandbox's terminal session: everything it started, even
    in process groups of their own), with their command lines."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != session:  # after ")": state, ppid, pgrp, session
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                out[int(pid)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            pass
    return out


def read_until(fd: int, seen: list, done, deadline: float) -> bool:
    """Reads the terminal into `seen` until done(text) or EOF; False on timeout."""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return True
        if not chunk:
            return True
        text = chunk.decode(errors="replace")
        sys.stdout.write(text)
        sys.stdout.flush()
        seen.append(text)
        if done("".join(seen)):
            return True
    return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=900, help="seconds until everything is up")
    args = parser.parse_args()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execvp("bash", ["bash", "e2e/sandbox.sh"])
    seen: list = []
    failures = []
    if not read_until(fd, seen, lambda t: UP in t, time.monotonic() + args.timeout):
        failures.append(f"not up within {args.timeout:.0f} s")
    elif UP not in "".join(seen):
        failures.append("the sandbox exited before everything was up")
    else:
        time.sleep(2)
        print("\n[sandbox_ctrl_c] pressing Ctrl-C", flush=True)
        os.write(fd, b"\x03")
        read_until(fd, seen, lambda _: False, time.monotonic() + 180)
    if failures:
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 120
    waited, status = 0, 0
    while not waited and time.monotonic() < deadline:
        waited, status = os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if not waited:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        failures.append("still running 2 minutes after Ctrl-C")
    text = "".join(seen)
    code = os.waitstatus_to_exitcode(status) if waited else None
    if code != 0:
        failures.append(f"exit code {code}, not 0")
    if "load balancers left in AWS: 0" not in text:
        failures.append("it did not report that no load balancer is left")
    if ERRORS.search(text):
        failures.append(f"an error in its output: {ERRORS.search(text).group(0)!r}")
    time.sleep(3)
    left = in_session(pid)  # pty.fork made the sandbox the leader of a new session
    if left:
        failures.append(f"processes left running: {left}")
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
    if failures:
        print("\n[sandbox_ctrl_c] FAILED: " + "; ".join(failures), flush=True)
        return 1
    print("\n[sandbox_ctrl_c] passed: Ctrl-C deleted the Service, nothing left, exit 0, no process left", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
