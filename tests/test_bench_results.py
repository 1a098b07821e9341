"""`python -m bench report --update`: one section of RESULTS.md rewritten, the rest kept."""

from __future__ import annotations

from bench.results import _replace_section

DOC = "# R\n\n## Start time (exec to the first 200)\n\nold\n\n## Crash\n\nkept\n\n## Plots\n\nx\n"


def test_the_section_is_replaced_up_to_the_next_heading():
    new = _replace_section(DOC, ["## Start time (exec to the first 200)", "", "new", ""])
    assert new == "# R\n\n## Start time (exec to the first 200)\n\nnew\n\n## Crash\n\nkept\n\n" \
                  "## Plots\n\nx\n"


def test_a_missing_section_goes_before_the_plots():
    new = _replace_section("# R\n\n## Plots\n\nx\n", ["## Start", "", "new", ""])
    assert new == "# R\n\n## Start\n\nnew\n\n## Plots\n\nx\n"


def _restart_run(server: str, repeat: int, p99: float, peak: float, *, control: bool = False,
                 checkpoint: bool = False) -> dict:
    return {"server": server, "scenario": "restart-close", "connections": 500,
            "signal": "SIGHUP", "repeat": repeat, "control": control, "checkpoint": checkpoint,
            "counts": {"ok": 100, "refused": 0, "5xx": 0}, "lost": 0, "reset": 0, "race": 0,
            "p99_ms": 301.0, "window_ms": {"p50": 301.0, "p99": p99, "max": peak},
            "pause_ms": peak - 300, "hand_over_s": None if control else 0.6,
            "hand_over_ms": None if control else {"p99": 304.0}, "serving_after": True}


RUNS = [_restart_run("g", 1, 320.0, 330.0, control=True), _restart_run("g", 1, 322.0, 329.0),
        _restart_run("g", 2, 340.0, 350.0, control=True), _restart_run("g", 2, 341.0, 356.0),
        _restart_run("g", 3, 500.0, 600.0, checkpoint=True)]


def test_the_restart_cost_pairs_each_restart_run_with_the_control_of_its_repeat():
    """p99 added: +2 and +1 (median +1.5); max added: -1 and +6 (median +2.5); the
    checkpoint run has no control and is left out."""
    from bench.report import restart_cost_table

    rows = restart_cost_table(RUNS).splitlines()[2:]
    assert rows == ["| restart-close | 500 | g | 2 | 330 → 332 ms | +1.5 ms (+1.0-+2.0) "
                    "| +2.5 ms (-1.0-+6.0) |"]


def test_the_restart_section_names_control_and_checkpoint_rows_and_replaces_its_own():
    from bench.results import restart_section

    env = {"command": "python -m bench drain --scenario restart-close --control",
           "date": "d", "python": "3.11", "platform": "p", "cpus": 2, "versions": {}}
    lines = restart_section([{"env": env, "runs": RUNS}])
    text = "\n".join(lines)
    assert "| g (no restart) | 2 |" in text and "| g | 2 |" in text
    assert "| g `--checkpoint` | 1 |" in text and "p99 added" in text
    doc = _replace_section(DOC, lines)
    assert doc.count(lines[0]) == 1 and doc.index(lines[0]) < doc.index("## Plots")
    assert _replace_section(doc, lines) == doc


def test_the_restart_ratio_table_pairs_each_peer_with_graceful_in_the_same_repeat():
    """graceful's window p99 over the peer's per repeat: 322/330 and 341/310; a peer that
    served nothing in the window has no ratio."""
    from bench.report import restart_ratio_table

    runs = [_restart_run("g", 1, 322.0, 329.0), _restart_run("g", 2, 341.0, 350.0),
            _restart_run("p", 1, 330.0, 329.0), _restart_run("p", 2, 310.0, 350.0),
            _restart_run("q", 1, 0.0, 0.0) | {"window_ms": {}}]
    rows = restart_ratio_table(runs, "g").splitlines()[2:]
    assert rows == ["| restart-close | 500 | p | 2 | 1.04 (0.98-1.10) | 1.00 |",
                    "| restart-close | 500 | q | 0 | - (no window: it did not serve) "
                    "| - (no window: it did not serve) |"]


def test_the_wrk_output_is_read():
    from bench.throughput import parse_wrk

    out = """Running 3s test @ http://127.0.0.1:1/work?ms=0
  1 threads and 64 connections
  Latency Distribution
     50%    2.50ms
     75%    3.00ms
     90%    4.00ms
     99%  850.00us
  36000 requests in 3.00s, 5.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  12000.50
Transfer/sec:      1.67MB
"""
    m = parse_wrk(out)
    assert m == {"errors": 3.0, "p50_ms": 2.5, "p99_ms": 0.85, "requests": 36000.0,
                 "rps": 12000.5}
