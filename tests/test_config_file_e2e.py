"""`--config PATH`: TOML keys named like the options; flag > environment > file > default."""

from __future__ import annotations

import signal

import pytest

from tests.test_check_e2e import APP, check, run
from tests.test_cli_e2e import _serve


def _budget_line(out: str, phase: str) -> list[str]:
    return next(line for line in out.splitlines() if line.strip().startswith(phase)).split()


def test_file_values_are_used_and_flag_and_env_beat_them(tmp_path):
    """1. drain-timeout from the file; hook-timeout from the file but the env beats it;
    cancel-grace in file and env, the flag beats both."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "graceful.toml").write_text(
        'drain-timeout = 12\nhook_timeout = 3\ncancel-grace = 2.5\naccess-log = true\n')
    result = check(tmp_path, "app:create_app", "--config", "graceful.toml",
                   "--cancel-grace", "0.5",
                   env={"GRACEFUL_HOOK_TIMEOUT": "4", "GRACEFUL_CANCEL_GRACE": "1.5"})
    assert result.returncode == 0, result.stderr
    assert "12.0" in _budget_line(result.stdout, "drain")
    assert "8.0" in _budget_line(result.stdout, "hooks")
    assert "0.5" in _budget_line(result.stdout, "cancel grace")
    env_file = check(tmp_path, "app:create_app", env={"GRACEFUL_CONFIG": "graceful.toml"})
    assert "12.0" in _budget_line(env_file.stdout, "drain")


def test_serve_listens_where_the_file_says(tmp_path):
    """2. serve takes the file too: port 0 from the file, the server starts and stops."""
    (tmp_path / "app.py").write_text("from aiohttp import web\n\n"
                                     "def create_app():\n    return web.Application()\n")
    (tmp_path / "graceful.toml").write_text('host = "127.0.0.1"\ndrain-timeout = 2\n')
    server = _serve(tmp_path, "app:create_app", "--config", "graceful.toml")
    try:
        server.started()
        server.signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0
    finally:
        server.kill()


@pytest.mark.parametrize(("text", "words"), [
    ("drain-timeot = 3\n", ["drain-timeot", "unknown"]),
    ('port = "eighty"\n', ["port", "integer"]),
    ("port = true\n", ["port", "integer"]),
    ("port = 70000\n", ["port", "70000"]),
    ("drain-timeout = -1\n", ["drain-timeout"]),
    ('loop = "tokio"\n', ["loop", "tokio"]),
    ("access-log = 1\n", ["access-log", "boolean"]),
    ("drain-timeout = \n", ["not valid TOML"]),
])
def test_bad_keys_exit_2_naming_the_key_and_the_file(tmp_path, text, words):
    """3. Unknown key, wrong type, out of range, not TOML: exit 2, one line, key and file."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "bad.toml").write_text(text)
    result = check(tmp_path, "app:create_app", "--config", "bad.toml")
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "bad.toml" in result.stderr
    for word in words:
        assert word in result.stderr


def test_missing_file_exits_2_naming_it(tmp_path):
    """4. A config file that does not exist: exit 2, one line naming it."""
    (tmp_path / "app.py").write_text(APP)
    result = check(tmp_path, "app:create_app", "--config", "nowhere.toml")
    assert result.returncode == 2
    assert "nowhere.toml" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_file_that_is_not_utf8_exits_2_naming_it(tmp_path):
    """5. A config file saved as Latin-1 or UTF-16: exit 2, one line naming it, for check and
    serve alike."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "latin.toml").write_bytes('websocket-close-reason = "arrêt"\n'.encode("latin-1"))
    (tmp_path / "utf16.toml").write_bytes("drain-timeout = 3\n".encode("utf-16"))
    for command in ("check", "serve"):
        for name in ("latin.toml", "utf16.toml"):
            result = run(tmp_path, command, "app:create_app", "--config", name)
            assert result.returncode == 2, (command, name, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert name in result.stderr and "UTF-8" in result.stderr, result.stderr


@pytest.mark.parametrize(("text", "words"), [
    ("drain-timeout = nan\n", ["finite"]),
    ("hook_timeout = inf\n", ["finite"]),
    ('unix-socket-mode = "999"\n', ["octal"]),
    ('websocket-close-reason = "' + "x" * 200 + '"\n', ["123 bytes"]),
    ('metrics-bind = "nowhere"\n', ["HOST:PORT"]),
    ("checkpoint-interval = 5\n", ["--checkpoint"]),
    ('livez-path = "health"\n', ["start with '/'"]),
    ('bind = ["[::1:80"]\n', ["IPv6"]),
])
def test_refused_values_name_the_file_and_the_key(tmp_path, text, words):
    """6. A value the options refuse: exit 2, one line naming the file and the key as the
    file writes it, never Config's own field name."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "bad.toml").write_text(text)
    key = text.split(" =")[0]
    result = check(tmp_path, "app:create_app", "--config", "bad.toml")
    assert result.returncode == 2, result
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert f"bad.toml: key {key!r}" in message, message
    assert key.replace("-", "_") not in message.replace(key, ""), message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize(("args", "env", "name"), [
    (["--unix-socket-mode", "999"], {}, "--unix-socket-mode"),
    ([], {"GRACEFUL_WEBSOCKET_CLOSE_REASON": "x" * 200}, "GRACEFUL_WEBSOCKET_CLOSE_REASON"),
    (["--metrics-bind", "nowhere"], {}, "--metrics-bind"),
    (["--drain-timeout", "nan"], {}, "--drain-timeout"),
    ([], {"GRACEFUL_DRAIN_TIMEOUT": "inf"}, "GRACEFUL_DRAIN_TIMEOUT"),
    (["--livez-path", "/same", "--readyz-path", "/same"], {}, "--readyz-path"),
])
def test_refused_values_name_the_flag_or_the_variable(tmp_path, args, env, name):
    """7. The same from a flag or an environment variable: that is what the line names."""
    (tmp_path / "app.py").write_text(APP)
    result = check(tmp_path, "app:create_app", *args, env=env)
    assert result.returncode == 2, result
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and name in message, message
    assert "_path" not in message and "_timeout" not in message.replace(name, ""), message


def test_a_key_written_twice_is_refused(tmp_path):
    """8. `drain_timeout` and `drain-timeout` in one file: refused, not the later taken."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "twice.toml").write_text("drain_timeout = 3\ndrain-timeout = 9\n")
    result = check(tmp_path, "app:create_app", "--config", "twice.toml")
    assert result.returncode == 2, result
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "twice.toml" in message and "'drain_timeout'" in message \
        and "'drain-timeout'" in message, message
