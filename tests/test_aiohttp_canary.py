"""The canary: what graceful relies on inside aiohttp, checked against the installed aiohttp.

scripts/test-matrix runs this file on the latest patch of every supported aiohttp minor.

1. Every name, signature and behaviour in aiohttp_internals.REQUIREMENTS holds.
2. SUPPORTED is pyproject's aiohttp range, and the probes check exactly the listed behaviours.
3. A moved name and a changed behaviour are each named by check().
4. An aiohttp outside the range is refused with one line naming both versions (ConfigError,
   exit 2): by graceful.run, and by `graceful serve` before it imports the app.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

import graceful
from graceful.errors import ConfigError, ExitCode
from graceful.http import aiohttp_check, aiohttp_internals, aiohttp_probes
from graceful.http.aiohttp_check import check, ensure_supported
from graceful.http.aiohttp_range import SUPPORTED
from tests.conftest import ROOT

REFUSAL = (f"aiohttp 3.10.11 is installed; graceful supports aiohttp{SUPPORTED} "
           f"(pip install 'aiohttp{SUPPORTED}')")


def test_installed_aiohttp_meets_every_requirement() -> None:
    """1."""
    moved = check()
    print(f"aiohttp {aiohttp.__version__}:", *moved or ["nothing moved"], sep="\n  ")
    assert moved == []


def test_supported_range_is_pyprojects() -> None:
    """2."""
    with open(ROOT / "pyproject.toml", "rb") as file:
        deps = tomllib.load(file)["project"]["dependencies"]
    assert f"aiohttp{SUPPORTED}" in deps
    assert aiohttp_check.in_range(aiohttp.__version__)


def test_probes_check_exactly_the_listed_behaviours() -> None:
    """2."""
    probed = {value for name, value in vars(aiohttp_probes).items()
              if name.isupper() and isinstance(value, str)}
    listed = {req.name for req in aiohttp_internals.REQUIREMENTS if req.kind == "behaviour"}
    assert probed == listed


def test_a_moved_signature_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """3."""
    monkeypatch.setattr(RequestHandler, "log_access", lambda self, request, response: None)
    assert check(behaviours=False) == [
        "aiohttp.web_protocol.RequestHandler.log_access: parameters time are gone (needed: "
        "called once per request after its response is written: stamps the start of the "
        "quiet time)"]


def test_a_changed_behaviour_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """3. As if aiohttp logged the access before writing the response."""
    finish_response = RequestHandler.finish_response

    async def log_first(self: RequestHandler, request: web.BaseRequest,
                        resp: web.StreamResponse, start_time: float | None) -> Any:
        self.log_access(request, resp, start_time)
        return await finish_response(self, request, resp, start_time)

    monkeypatch.setattr(RequestHandler, "finish_response", log_first)
    moved = check()
    assert [line for line in moved if "log_access" in line] == [
        f"{aiohttp_internals._HANDLER}: no longer true: {aiohttp_probes.LOG_ACCESS}: called "
        "for ['/first', '/first', '/second', '/second'] (needed: the quiet time starts there)"]


@pytest.mark.parametrize("version", ["3.10.11", "3.15.0", "3.15.0a1", "4.0.0"])
def test_versions_outside_the_range_are_refused(monkeypatch: pytest.MonkeyPatch,
                                                version: str) -> None:
    """4."""
    monkeypatch.setattr(aiohttp, "__version__", version)
    with pytest.raises(ConfigError) as raised:
        ensure_supported()
    assert str(raised.value) == REFUSAL.replace("3.10.11", version)
    assert raised.value.exit_code is ExitCode.USAGE


def test_graceful_run_refuses_before_starting(monkeypatch: pytest.MonkeyPatch) -> None:
    """4."""
    def factory() -> web.Application:
        raise AssertionError("the app was built")

    monkeypatch.setattr(aiohttp, "__version__", "3.10.11")
    with pytest.raises(ConfigError, match=r"aiohttp 3\.10\.11 is installed"):
        graceful.run(factory, port=0, bridge=None)


def test_serve_refuses_before_importing_the_app(tmp_path) -> None:
    """4. Through the real CLI, with an aiohttp 3.10.11 distribution first on the import
    path: exit 2 and one line, before the (missing) app is imported or a worker started."""
    dist = tmp_path / "aiohttp-3.10.11.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aiohttp\nVersion: 3.10.11\n")
    result = subprocess.run([sys.executable, "-m", "graceful", "serve", "no_such_module:app"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert (result.returncode, result.stderr) == (2, f"graceful: error: {REFUSAL}\n")
