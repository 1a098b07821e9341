"""Start to first 200 of the demo app under Wine: a `graceful bundle` executable (one file,
one folder) against the same app under the Wine set-up's Windows python.

    python -m bench.bundle_start [--runs 5] EXE... [--python]

Each run starts `wine EXE serve --port P` (or `wine python.exe -m graceful serve
graceful.demo:factory --port P`), polls GET /readyz every 10 ms until it answers 200, and
ends the process group it started; the commands take turns. Wine's own start is in every
figure alike (a warm wineserver: scripts/wine-env.sh's wine_server_up). Prints the median
and the range.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import time
import urllib.error
import urllib.request

WIN_PY = r"C:\Python312\python.exe"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def first_200(argv: list[str], port: int, timeout: float = 120) -> float:
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.monotonic() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.01)
        raise TimeoutError(f"no 200 from {argv} in {timeout}s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this run started, by its pid
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exes", nargs="*", help="bundles of graceful.demo:factory")
    parser.add_argument("--python", action="store_true",
                        help="also the Wine set-up's python.exe -m graceful serve")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    commands = {exe: ["wine", exe, "serve"] for exe in args.exes}
    if args.python:
        commands["python.exe -m graceful"] = ["wine", WIN_PY, "-m", "graceful", "serve",
                                              "graceful.demo:factory"]
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(args.runs):  # interleaved: a machine's load changes all of them alike
        for label, argv in commands.items():
            port = free_port()
            times[label].append(first_200([*argv, "--port", str(port)], port))
    for label, runs in times.items():
        print(f"{label}: median {statistics.median(runs):.2f}s "
              f"(min {min(runs):.2f}, max {max(runs):.2f}, {args.runs} runs)")


if __name__ == "__main__":
    main()
