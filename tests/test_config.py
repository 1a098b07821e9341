"""Options to Config: every flag and its GRACEFUL_* variable, validation, loop choice."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from graceful.cli import main as cli
from graceful.config import Config
from graceful.errors import ConfigError
from graceful.host.loops import loop_factory


@pytest.fixture
def parsed(monkeypatch):
    """Run `graceful serve` up to the point it would start, and return its Config."""
    seen: list[Config] = []

    def fake_start(target, app_dir, config):
        seen.append(config)
        return None

    monkeypatch.setattr("graceful.supervisor.start.start", fake_start)
    monkeypatch.setattr("graceful.supervisor.start.wait_ready", lambda *args: None)
    monkeypatch.setattr("graceful.supervisor.main.supervise", lambda *args: 0)

    def parse(*args: str, env: dict[str, str] | None = None) -> Config:
        result = CliRunner().invoke(cli.main, ["serve", "tests.apps:basic", *args], env=env)
        assert result.exit_code == 0, result.output
        return seen[-1]

    return parse


@pytest.mark.parametrize(("args", "field", "value"), [
    (["--host", "0.0.0.0"], "host", "0.0.0.0"),
    (["--port", "0"], "port", 0),
    (["--drain-timeout", "2.5"], "drain_timeout", 2.5),
    (["--pre-stop-delay", "3"], "pre_stop_delay", 3.0),
    (["--cancel-grace", "0.1"], "cancel_grace", 0.1),
    (["--hook-timeout", "9"], "hook_timeout", 9.0),
    (["--checkpoint", "s.json"], "checkpoint", Path("s.json")),
    (["--checkpoint", "s.json", "--checkpoint-interval", "2"], "checkpoint_interval", 2.0),
    (["--checkpoint-timeout", "1"], "checkpoint_timeout", 1.0),
    (["--loop", "asyncio"], "loop", "asyncio"),
    (["--log-format", "json"], "log_format", "json"),
    (["--log-level", "DEBUG"], "log_level", "debug"),
    (["--access-log"], "access_log", True),
    (["--livez-path", "/alive"], "livez_path", "/alive"),
    (["--readyz-path", "/ready"], "readyz_path", "/ready"),
    (["--backlog", "16"], "backlog", 16),
    (["--no-health"], "health", False),
    ([], "health", True),
    (["--websocket-close-reason", "deploying"], "websocket_close_reason", "deploying"),
    (["--websocket-close-timeout", "0.5"], "websocket_close_timeout", 0.5),
    (["--termination-grace-period", "30"], "termination_grace_period", 30.0),
    ([], "termination_grace_period", None),
    (["--bind", "127.0.0.1:1", "--bind", "[::1]:2", "--bind", "unix:/a.sock"], "bind",
     ("127.0.0.1:1", "[::1]:2", "unix:/a.sock")),
    (["--fd", "3", "--fd", "4"], "fd", (3, 4)),
    (["--unix-socket-mode", "660"], "unix_socket_mode", 0o660),
    (["--ssl-certfile", "c.pem"], "ssl_certfile", "c.pem"),
    (["--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem"], "ssl_keyfile", "k.pem"),
    (["--ssl-certfile", "c.pem", "--ssl-keyfile-password", "pw"], "ssl_keyfile_password",
     "pw"),
    (["--ssl-certfile", "c.pem", "--ssl-ca-certs", "ca.pem", "--ssl-client-cert",
      "required"], "ssl_client_cert", "required"),
    (["--metrics-bind", "127.0.0.1:9100"], "metrics_bind", "127.0.0.1:9100"),
    ([], "metrics_bind", None),
    ([], "metrics_default_registry", True),
    (["--no-metrics-default-registry"], "metrics_default_registry", False),
])
def test_flag_to_config(parsed, args, field, value):
    assert getattr(parsed(*args), field) == value


@pytest.mark.parametrize(("env", "field", "value"), [
    ({"GRACEFUL_PORT": "9000"}, "port", 9000),
    ({"GRACEFUL_DRAIN_TIMEOUT": "7"}, "drain_timeout", 7.0),
    ({"GRACEFUL_PRE_STOP_DELAY": "1"}, "pre_stop_delay", 1.0),
    ({"GRACEFUL_CHECKPOINT": "x.json", "GRACEFUL_CHECKPOINT_INTERVAL": "3"},
     "checkpoint_interval", 3.0),
    ({"GRACEFUL_LOOP": "asyncio"}, "loop", "asyncio"),
    ({"GRACEFUL_LOG_FORMAT": "console"}, "log_format", "console"),
    ({"GRACEFUL_LOG_LEVEL": "warning"}, "log_level", "warning"),
    ({"GRACEFUL_HOST": "::1"}, "host", "::1"),
    ({"GRACEFUL_ACCESS_LOG": "1"}, "access_log", True),
    ({"GRACEFUL_HEALTH": "0"}, "health", False),
    ({"GRACEFUL_HEALTH": "false"}, "health", False),
    ({"GRACEFUL_BIND": "127.0.0.1:1 unix:/a.sock"}, "bind", ("127.0.0.1:1", "unix:/a.sock")),
    ({"GRACEFUL_UNIX_SOCKET_MODE": "600"}, "unix_socket_mode", 0o600),
    ({"GRACEFUL_METRICS_BIND": "[::1]:0"}, "metrics_bind", "[::1]:0"),
    ({"GRACEFUL_METRICS_DEFAULT_REGISTRY": "0"}, "metrics_default_registry", False),
])
def test_environment_to_config(parsed, env, field, value):
    assert getattr(parsed(env=env), field) == value


def test_flag_beats_environment(parsed):
    assert parsed("--port", "1", env={"GRACEFUL_PORT": "2"}).port == 1


def test_defaults():
    config = Config()
    assert (config.drain_timeout, config.pre_stop_delay, config.port) == (30.0, 0.0, 8080)
    assert config.stop_budget == 30 + 1 + 5 * 2 + 5


@pytest.mark.parametrize("changes", [
    {"drain_timeout": -1}, {"pre_stop_delay": float("nan")}, {"port": 70000},
    {"loop": "tokio"}, {"log_format": "xml"}, {"checkpoint_interval": 1},
    {"livez_path": "livez"}, {"readyz_path": "/livez"}, {"backlog": 0},
    {"websocket_close_reason": "x" * 124}, {"websocket_close_timeout": -1},
    {"termination_grace_period": float("nan")},
    {"checkpoint": "x", "checkpoint_interval": 0},
    {"metrics_bind": "9100"}, {"metrics_bind": ":9100"}, {"metrics_bind": "host:99999"},
    {"metrics_bind": "host:port"},
])
def test_invalid_config(changes):
    with pytest.raises(ConfigError):
        Config(**changes)


def test_loop_choice():
    assert loop_factory("asyncio")[0] == "asyncio"
    assert loop_factory("auto")[0] == "uvloop"  # installed by the dev extra
    assert loop_factory("uvloop")[0] == "uvloop"
    with pytest.raises(ConfigError, match="not available on linux"):
        loop_factory("winloop")
    with pytest.raises(ConfigError, match="unknown loop"):
        loop_factory("tokio")


def test_key_password_not_in_the_config_repr():
    config = Config(ssl_certfile=Path("c.pem"), ssl_keyfile_password="s3cret")
    assert "s3cret" not in repr(config)
def test_metrics_without_prometheus_client_name_the_extra(monkeypatch):
    """--metrics-bind where prometheus_client is not installed: exit 2 naming the extra."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "prometheus_client" else real(name, *a))
    with pytest.raises(ConfigError, match=r"the metrics extra\): pip install prometheus_client"):
        Config(metrics_bind="127.0.0.1:0")


def test_metrics_bind_parsed():
    from graceful.config import parse_bind

    assert parse_bind("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_bind("[::1]:0") == ("::1", 0)
