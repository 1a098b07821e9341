"""The command line as a user types it: the console script, from the app's own folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ServerProcess

APP = "from aiohttp import web\n\ndef create_app():\n    return web.Application()\n"
CONSOLE_SCRIPT = Path(sys.executable).with_name("graceful")


def _serve(cwd: Path, *args: str) -> ServerProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen([str(CONSOLE_SCRIPT), "serve", *args, "--port", "0",
                             "--log-format", "json"], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server = ServerProcess.__new__(ServerProcess)
    ServerProcess._attach(server, proc)
    return server


def _serve_and_stop(server: ServerProcess) -> int:
    try:
        server.started()
        server.signal(signal.SIGTERM)
        return server.proc.wait(timeout=15)
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_readme_usage_line_from_the_apps_folder(tmp_path):
    """1. `graceful serve app:create_app` in a folder holding app.py, no PYTHONPATH."""
    (tmp_path / "app.py").write_text(APP)
    assert _serve_and_stop(_serve(tmp_path, "app:create_app")) == 0


def test_app_dir_picks_the_folder_to_import_from(tmp_path):
    """2. `--app-dir DIR` (and GRACEFUL_APP_DIR) import from another folder."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text(APP)
    assert _serve_and_stop(_serve(tmp_path, "app:create_app", "--app-dir", "src")) == 0


def test_missing_app_dir_is_one_line_exit_2(tmp_path):
    """3. A folder that does not exist: exit 2, one line naming it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(CONSOLE_SCRIPT), "serve", "app:create_app", "--app-dir",
                             "nowhere"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "nowhere" in result.stderr and "Traceback" not in result.stderr


VERSIONED_APP = ("from aiohttp import web\n\n"
                 "async def version(request):\n    return web.Response(text={version!r})\n\n"
                 "def create_app():\n    app = web.Application()\n"
                 "    app.router.add_get('/version', version)\n    return app\n")


def _get(port: int, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.read().decode()


def test_readme_restart_lines_as_typed(tmp_path):
    """README's restart usage as a user types it, with the console script, in the app's
    folder, no PYTHONPATH: `graceful serve app:create_app --pid-file PATH`, the code
    changed, `graceful restart --pid-file PATH` exits 0 and the new code answers; the pid
    in the file is the same process before and after, and it still stops cleanly."""
    (tmp_path / "app.py").write_text(VERSIONED_APP.format(version="one"))
    pid_file = tmp_path / "app.pid"
    server = _serve(tmp_path, "app:create_app", "--pid-file", str(pid_file))
    try:
        port = server.wait_for("server.started")["port"]
        server.wait_for("supervisor.ready")
        assert _get(port, "/version") == "one"
        assert int(pid_file.read_text()) == server.proc.pid
        (tmp_path / "app.py").write_text(VERSIONED_APP.format(version="two"))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        restart = subprocess.run([str(CONSOLE_SCRIPT), "restart", "--pid-file", str(pid_file)],
                                 cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=60)
        assert restart.returncode == 0, restart.stderr
        assert restart.stdout.startswith(f"restarted: pid {server.proc.pid} serves"), \
            restart.stdout
        assert _get(port, "/version") == "two"
        assert int(pid_file.read_text()) == server.proc.pid
        assert server.proc.poll() is None
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()

