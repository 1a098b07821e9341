"""The drain scenarios (a stop under load) and the restart scenarios (SIGHUP under load)."""

from __future__ import annotations

import dataclasses

from bench.client import Request

UPLOAD_BYTES = 1 << 20
UPLOAD_S = 2.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    request: Request
    handler_s: float  # time the handler itself takes (sleep)
    drain_timeout_s: float
    pre_stop_s: float = 0.0
    about: str = ""
    restart: bool = False  # SIGHUP, each server's own restart (bench/restart.py)

    @property
    def nominal_s(self) -> float:
        """Least time a request needs: the upload, then the handler."""
        return self.request.nominal_s + self.handler_s

    @property
    def warmup_s(self) -> float:
        """Clients start staggered over one nominal duration; the signal comes a second
        after the last one started, so requests in flight are spread over all ages."""
        return self.nominal_s + 1.0


def build(name: str, latency_ms: float) -> Scenario:
    short_s = latency_ms / 1000
    if name == "short":
        return Scenario(name, Request(f"/work?ms={latency_ms:g}"), short_s, 10.0,
                        about=f"GET, {latency_ms:g} ms handler, keep-alive")
    if name == "long":
        return Scenario(name, Request("/work?ms=5000"), 5.0, 10.0,
                        about="GET, 5 s handler, keep-alive, drain timeout 10 s")
    if name == "upload":
        return Scenario(name, Request("/upload", UPLOAD_BYTES, UPLOAD_S), 0.0, 10.0,
                        about="POST 1 MiB trickled over 2 s, keep-alive")
    if name == "prestop":
        return Scenario(name, Request(f"/work?ms={latency_ms:g}", close=True), short_s, 10.0,
                        pre_stop_s=1.0,
                        about=f"GET, {latency_ms:g} ms, a new connection per request; "
                              "graceful with --pre-stop-delay 1")
    if name in ("restart", "restart-close"):
        close = name == "restart-close"
        return Scenario(name, Request(f"/work?ms={latency_ms:g}", close=close), short_s, 10.0,
                        restart=True,
                        about=f"GET, {latency_ms:g} ms, "
                              f"{'a new connection per request' if close else 'keep-alive'}; "
                              "SIGHUP: each server's own restart")
    raise ValueError(f"unknown scenario {name!r} ({', '.join(NAMES)})")


NAMES = ("short", "long", "upload", "prestop", "restart", "restart-close")
