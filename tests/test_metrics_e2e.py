"""Drain metrics for Prometheus (--metrics-bind), end to end: the real CLI, real signals.

1. /metrics on its own listener: the phase, no request in flight, while serving.
2. During a drain, after the app's listeners closed, a scrape is answered and shows the
   phase draining and the requests in flight falling as they are answered.
3. In the hooks phase, after a deadline cut: stops by source and mode, requests cancelled,
   the drain's duration, a failed hook, the checkpoint's generation, age and flush times.
4. Without --metrics-bind, the served process has not imported prometheus_client (nor
   graceful.metrics.endpoint); with it, it has.
5. A bad or busy --metrics-bind is a usage error (exit 2) before the app starts.
6. /metrics also serves prometheus_client's default registry: the app's own metrics,
   beside graceful's (under graceful serve from every worker, without the process
   collector: prometheus_client's multiprocess mode); --no-metrics-default-registry (or its
   environment variable, or its key in a --config file) serves graceful's alone.
7. In-process (the library, no supervisor) the page is the process's: the phase without a
   pid, the process collector.

graceful serve's workers write their metrics for the service (test_metrics_workers_e2e.py):
the phase is each worker's, labelled with its pid.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest

APP = "tests.apps:observed"


def _value(text: str, name: str, **labels: str) -> float | None:
    """The sample `name{labels}` of a Prometheus text page, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match and match[1] == name and ",".join(sorted((match[2] or "").split(","))) == want:
            return float(match[3])
    return None


async def scrape(server) -> str:
    port = server.wait_for("metrics.started")["port"]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    return body.decode()


def worker(server) -> str:
    """The pid of the one worker, as the phase's `pid` label names it."""
    return str(server.wait_for("server.started")["pid"])


async def stopped(server) -> None:
    """Stopped, not killed at the test's end: a killed supervisor leaves its metrics folder
    behind. The app's notify_peers hook fails: exit 5."""
    server.signal()
    assert await server.exited() == 5


async def test_metrics_while_serving(serve):
    """1."""
    server = serve(APP, "--metrics-bind", "127.0.0.1:0")
    page = await scrape(server)
    assert _value(page, "graceful_phase", phase="ready", pid=worker(server)) == 1
    assert _value(page, "graceful_phase", phase="draining", pid=worker(server)) == 0
    assert _value(page, "graceful_requests_in_flight") == 0
    # a family without samples is left out of the merged page (prometheus_client's
    # multiprocess mode): the stops appear with the first one (2.)
    assert "# TYPE graceful_requests_cancelled_total counter" in page
    await stopped(server)


async def test_a_scrape_during_the_drain_sees_the_in_flight_count_fall(serve):
    """2. Three requests of 0.4, 0.9 and 1.4 s in flight at the SIGTERM: scraped after the
    listeners closed, and after each answer, the count goes 3, 2, 1."""
    server = serve(APP, "--metrics-bind", "127.0.0.1:0", "--drain-timeout", "10")
    held = [await server.hold(f"/slow?s={s}") for s in (0.4, 0.9, 1.4)]
    server.stop()
    await server.event("listeners.closed")
    with pytest.raises(ConnectionRefusedError):  # the app's listener is closed, not ours
        await asyncio.open_connection("127.0.0.1", server.port)
    seen = []
    page = await scrape(server)
    assert _value(page, "graceful_phase", phase="draining", pid=worker(server)) == 1
    assert _value(page, "graceful_stops_total", source="SIGTERM", mode="graceful") == 1
    seen.append(_value(page, "graceful_requests_in_flight"))
    for request in held[:2]:
        await request.response()
        seen.append(_value(await scrape(server), "graceful_requests_in_flight"))
    assert seen == [3, 2, 1]
    await server.assert_held_answered()
    assert await server.exited() == 5  # the app's notify_peers hook fails


async def test_the_stop_counted_in_the_hooks_phase(serve, tmp_path):
    """3. A request cut at the deadline, a failing hook; scraped while a slow hook runs."""
    server = serve(APP, "--metrics-bind", "127.0.0.1:0", "--drain-timeout", "0.3",
                   "--cancel-grace", "0.2", "--checkpoint", str(tmp_path / "state.ckpt"),
                   "--checkpoint-interval", "0.05", "--log-level", "debug")
    assert (await server.get("/count")).status == 200
    await server.event("checkpoint.flushed", periodic=True)
    await server.hold("/slow?s=30")
    server.stop()
    await server.event("app.slow_hook")
    page = await scrape(server)
    assert _value(page, "graceful_requests_cancelled_total") == 1
    assert _value(page, "graceful_hooks_failed_total") == 1
    assert 0.25 < _value(page, "graceful_drain_duration_seconds") < 2
    assert _value(page, "graceful_requests_in_flight") == 0
    assert _value(page, "graceful_checkpoint_generation") >= 1
    assert 0 <= _value(page, "graceful_checkpoint_age_seconds") < 5
    assert _value(page, "graceful_checkpoint_flush_duration_seconds_count") >= 1
    assert await server.exited() == 3


@pytest.mark.parametrize("metrics", [False, True])
async def test_prometheus_client_is_imported_only_with_metrics(serve, metrics):
    """4."""
    args = ["--metrics-bind", "127.0.0.1:0"] if metrics else []
    server = serve(APP, *args)
    loaded = set(json.loads((await server.get("/modules")).body))
    if metrics:
        assert {"graceful.metrics.endpoint", "prometheus_client"} <= loaded
    else:
        assert loaded == set()
    await stopped(server)


async def test_bad_or_busy_metrics_bind_is_a_usage_error(serve):
    """5."""
    server = serve(APP, "--metrics-bind", "nowhere", wait_started=False)
    assert await server.exited() == 2
    assert "--metrics-bind must be HOST:PORT" in "".join(server.raw)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = serve(APP, "--metrics-bind", f"127.0.0.1:{port}", wait_started=False)
        assert await server.exited() == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in "".join(server.raw)
    assert "server.started" not in server.names()


@pytest.mark.parametrize("opt_out", [None, "flag", "env", "file"])
async def test_the_default_registry_is_served_unless_opted_out(serve, tmp_path, opt_out):
    """6."""
    args, env = ["--metrics-bind", "127.0.0.1:0"], {}
    if opt_out == "flag":
        args.append("--no-metrics-default-registry")
    elif opt_out == "env":
        env["GRACEFUL_METRICS_DEFAULT_REGISTRY"] = "0"
    elif opt_out == "file":
        (tmp_path / "g.toml").write_text("metrics-default-registry = false\n")
        args += ["--config", str(tmp_path / "g.toml")]
    server = serve("tests.apps:instrumented", *args, env=env)
    for _ in range(3):
        await server.get("/hit")
    page = await scrape(server)
    assert _value(page, "graceful_phase", phase="ready", pid=worker(server)) == 1
    if opt_out is None:
        assert _value(page, "app_hits_total") == 3
        assert page.count("# TYPE graceful_phase gauge") == 1
    else:
        assert "app_hits_total" not in page
    assert "process_cpu_seconds_total" not in page
    server.signal()
    assert await server.exited() == 0


async def test_in_process_the_page_is_the_process(graceful_server):
    """7."""
    server = graceful_server("tests.apps:basic", in_process=True, metrics_bind="127.0.0.1:0")
    page = await scrape(server)
    assert _value(page, "graceful_phase", phase="ready") == 1
    assert _value(page, "graceful_requests_in_flight") == 0
    assert _value(page, "process_cpu_seconds_total") > 0
    assert "# TYPE graceful_stops_total counter" in page
    server.stop()
    assert await server.exited() == 0
