"""`graceful check MODULE:ATTR`: the app built without serving, the options validated, the
stop budget printed, exit 1 when it does not fit `--within`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CONSOLE_SCRIPT = Path(sys.executable).with_name("graceful")
APP = """\
from aiohttp import web

STARTED = []

async def on_startup(app):
    raise RuntimeError("on_startup must not run under graceful check")

def create_app():
    print("factory ran")
    app = web.Application()
    app.on_startup.append(on_startup)
    return app
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k != "PYTHONPATH" and not k.startswith("GRACEFUL_")}


def check(cwd: Path, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    return run(cwd, "check", *args, env=env)


def run(cwd: Path, *args: str, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """`graceful ARGS` in `cwd`, with no GRACEFUL_* variable but those of `env`."""
    return subprocess.run([str(CONSOLE_SCRIPT), *args], cwd=cwd,
                          env={**_env(), **(env or {})}, capture_output=True, text=True,
                          timeout=60)


def test_prints_the_budget_and_builds_the_app_without_starting_it(tmp_path):
    """1. The factory runs, on_startup does not; every phase is a row; the worst case is the
    sum, with the exit's wait for threads."""
    (tmp_path / "app.py").write_text(APP)
    result = check(tmp_path, "app:create_app", "--pre-stop-delay", "5", "--drain-timeout",
                   "15", "--hook-timeout", "2", "--checkpoint-timeout", "1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "factory ran" in out
    for phase, seconds in [("pre-stop delay", "5.0"), ("drain", "15.0"),
                           ("cancel grace", "1.0"), ("hooks", "4.0"), ("checkpoint", "1.0"),
                           ("threads", "1.0"), ("worst case", "27.0")]:
        line = next(line for line in out.splitlines() if line.strip().startswith(phase))
        assert seconds in line.split(), (phase, line)


def test_within_exits_1_when_the_worst_case_exceeds_it(tmp_path):
    """2. --within 26 with a 27 s worst case: exit 1 naming both numbers; --within 27: 0."""
    (tmp_path / "app.py").write_text(APP)
    args = ["app:create_app", "--pre-stop-delay", "5", "--drain-timeout", "15",
            "--hook-timeout", "2", "--checkpoint-timeout", "1"]
    over = check(tmp_path, *args, "--within", "26")
    assert over.returncode == 1
    assert "27" in over.stdout and "26" in over.stdout
    assert check(tmp_path, *args, "--within", "27").returncode == 0


def test_reads_the_environment_like_serve(tmp_path):
    """3. GRACEFUL_DRAIN_TIMEOUT counts as it does for serve."""
    (tmp_path / "app.py").write_text(APP)
    result = check(tmp_path, "app:create_app", "--within", "20",
                   env={"GRACEFUL_DRAIN_TIMEOUT": "20"})
    assert result.returncode == 1, result.stdout


def test_bad_target_and_bad_options_exit_2_in_one_line(tmp_path):
    """4. A target that does not import, an app whose route shadows /readyz, a bad value:
    exit 2, one line, no traceback."""
    (tmp_path / "app.py").write_text(APP + """
def shadows():
    app = web.Application()
    app.router.add_get("/readyz", lambda request: web.Response())
    return app
""")
    for args in (["nowhere:create_app"], ["app:shadows"],
                 ["app:create_app", "--drain-timeout", "-1"],
                 ["app:create_app", "--within", "soon"],
                 ["app:create_app", "--ssl-certfile", "nowhere.pem"],
                 ["app:create_app", "--bind", "[::1:80"]):
        result = check(tmp_path, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_factory_that_raises_exits_2_in_one_line(tmp_path):
    """5. A factory that raises is not "too long for --within" (exit 1): exit 2, one line
    naming the target and the error, no traceback."""
    (tmp_path / "app.py").write_text(APP + """
def broken():
    raise KeyError("DATABASE_URL")

async def broken_async():
    raise RuntimeError("no database")
""")
    for target, error in (("app:broken", "KeyError: 'DATABASE_URL'"),
                          ("app:broken_async", "RuntimeError: no database")):
        result = check(tmp_path, target, "--within", "1000")
        assert result.returncode == 2, (target, result.stdout, result.stderr)
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1 and target in message and error in message, \
            message


def test_within_must_be_a_finite_number(tmp_path):
    """6. `--within nan` and `--within inf` would let every budget fit: refused, exit 2."""
    (tmp_path / "app.py").write_text(APP)
    for value in ("nan", "inf", "-inf"):
        result = check(tmp_path, "app:create_app", "--within", value)
        assert result.returncode == 2, (value, result.stdout, result.stderr)
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1 and "--within" in message, message
