"""A frozen Config built once from options, environment and defaults, validated once."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from pathlib import Path

from graceful.errors import ConfigError, literal
from graceful.http import binds

LOOPS = ("auto", "asyncio", "uvloop", "winloop")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
CLIENT_CERTS = ("none", "optional", "required")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Every knob of the runtime. Times are in seconds."""

    host: str = "127.0.0.1"
    port: int = 8080
    # In-flight requests get this long to finish, counted from the moment the listeners
    # close (after the pre-stop delay). Below Kubernetes' default 30 s grace period once
    # the pre-stop delay is added, by design of the operator.
    drain_timeout: float = 30.0
    # Keep accepting and serving (with Connection: close) this long after the stop request,
    # while load balancers deregister us; readiness is already 503.
    pre_stop_delay: float = 0.0
    # Handlers still running at the drain deadline are cancelled and get this long to unwind.
    cancel_grace: float = 1.0
    # Each on_startup handler (and cleanup_ctx) gets this long before the start fails.
    startup_timeout: float = 60.0
    # Each shutdown hook (and aiohttp's on_shutdown / on_cleanup) gets this long.
    hook_timeout: float = 5.0
    checkpoint: Path | None = None
    checkpoint_interval: float | None = None
    # Time reserved for the final checkpoint flush, that a slow drain cannot eat.
    checkpoint_timeout: float = 5.0
    loop: str = "auto"
    log_format: str = "auto"
    log_level: str = "info"
    access_log: bool = False
    # Answer livez_path and readyz_path: routes of the app its middlewares never see (False:
    # every path is the app's).
    health: bool = True
    livez_path: str = "/livez"
    readyz_path: str = "/readyz"
    # With an optional startup check failing (graceful.add_check), readiness answers 200
    # "degraded"; False: 503 "degraded".
    degraded_ready: bool = True
    backlog: int = 1024
    # SO_REUSEPORT on the TCP listeners (run_app's reuse_port): several processes share a port.
    reuse_port: bool = False
    # Websockets open at the stop get close code 1001 with this reason text, and this long
    # for the closing handshake before their connection is dropped.
    websocket_close_reason: str = "server stopping"
    websocket_close_timeout: float = 5.0
    # Kubernetes' terminationGracePeriodSeconds, when given: the stop budget is checked
    # against it at start (graceful/lifecycle/budget.py).
    termination_grace_period: float | None = None
    # --bind HOST:PORT / [V6]:PORT / unix:PATH and --fd N (graceful/http/binds.py); when any is
    # given, host and port are not used.
    bind: tuple[str, ...] = ()
    fd: tuple[int, ...] = ()
    unix_socket_mode: int | None = None  # accepts "600" (octal text) too
    # TLS (graceful/http/tls.py): files are read and checked at start, and by `graceful check`.
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_keyfile_password: str | None = dataclasses.field(default=None, repr=False)
    ssl_ca_certs: Path | None = None
    ssl_client_cert: str = "none"
    # A restart's new workers must be ready within this long, or they are ended.
    restart_timeout: float = 60.0
    # Development: restart when a file under the app's folder changes (reload.py).
    reload: bool = False
    # The supervisor's pid, written once serving (pidfile.py).
    pid_file: Path | None = None
    # HOST:PORT to serve Prometheus metrics on, its own listener (graceful/metrics/endpoint.py).
    metrics_bind: str | None = None
    # Serve prometheus_client's default registry (process, platform, GC collectors and the
    # app's own metrics) on /metrics beside graceful's (graceful/metrics/registry.py).
    metrics_default_registry: bool = True
    workers: int = 1  # processes behind the supervisor (graceful serve)

    def __post_init__(self) -> None:
        self._check_listening()
        for name in ("drain_timeout", "pre_stop_delay", "cancel_grace", "hook_timeout",
                     "checkpoint_timeout", "startup_timeout", "websocket_close_timeout"):
            _check_seconds(name, getattr(self, name))
        _check_seconds("restart_timeout", self.restart_timeout, positive=True)
        if self.checkpoint_interval is not None:
            _check_seconds("checkpoint_interval", self.checkpoint_interval, positive=True)
            if self.checkpoint is None:
                raise ConfigError("{checkpoint_interval} needs {checkpoint} (a file to flush)",
                                  fields=["checkpoint_interval", "checkpoint"])
        if self.termination_grace_period is not None:
            _check_seconds("termination_grace_period", self.termination_grace_period)
        if len(self.websocket_close_reason.encode()) > 123:  # RFC 6455 section 5.5
            raise ConfigError("{websocket_close_reason} must be at most 123 bytes in UTF-8",
                              fields=["websocket_close_reason"])
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"{{port}} must be between 0 and 65535, got {literal(self.port)}",
                              fields=["port"])
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"{{workers}} must be at least 1, got {literal(self.workers)}",
                              fields=["workers"])
        if self.workers > 1 and self.checkpoint is not None:
            raise ConfigError("{workers} above 1 with {checkpoint}: a checkpoint has one "
                              "writer, so it is served by one worker (keep state shared by "
                              "several workers in a database or a cache)",
                              fields=["workers", "checkpoint"])
        if self.backlog < 1:
            raise ConfigError(f"{{backlog}} must be at least 1, got {literal(self.backlog)}",
                              fields=["backlog"])
        _check_choice("loop", self.loop, LOOPS)
        _check_choice("log_format", self.log_format, LOG_FORMATS)
        _check_choice("log_level", self.log_level, LOG_LEVELS)
        for name in ("livez_path", "readyz_path"):
            path = getattr(self, name)
            if not path.startswith("/"):
                raise ConfigError(f"{{{name}}} must start with '/', got {literal(path)}",
                                  fields=[name])
        if self.livez_path == self.readyz_path:
            raise ConfigError("{livez_path} and {readyz_path} must differ",
                              fields=["livez_path", "readyz_path"])
        if self.metrics_bind is not None:
            parse_bind(self.metrics_bind)
            if importlib.util.find_spec("prometheus_client") is None:
                raise ConfigError("--metrics-bind needs prometheus_client (the metrics "
                                  "extra): pip install prometheus_client")
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(os.fspath(self.checkpoint)))

    def _check_listening(self) -> None:
        object.__setattr__(self, "bind", tuple(self.bind))
        object.__setattr__(self, "fd", tuple(self.fd))
        for spec in self.bind:
            binds.parse(spec)
        for fd in self.fd:
            if fd < 0:
                raise ConfigError(f"{{fd}} {fd}: a file descriptor is >= 0", fields=["fd"])
        object.__setattr__(self, "unix_socket_mode", binds.parse_mode(self.unix_socket_mode))
        _check_choice("ssl_client_cert", self.ssl_client_cert, CLIENT_CERTS)
        if self.ssl_certfile is None:
            for name in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs"):
                if getattr(self, name) is not None:
                    raise ConfigError(f"{{{name}}} needs {{ssl_certfile}}",
                                      fields=[name, "ssl_certfile"])
        if self.ssl_client_cert != "none" and self.ssl_ca_certs is None:
            raise ConfigError("{ssl_client_cert} optional/required needs {ssl_ca_certs} (the "
                              "CAs that sign client certificates)",
                              fields=["ssl_client_cert", "ssl_ca_certs"])

    @property
    def hooks_budget(self) -> float:
        """The hooks phase's share of the stop, in seconds: one hook_timeout for graceful's
        own hooks and one for aiohttp's on_cleanup and cleanup_ctx (each hook is bounded by
        hook_timeout on its own, and the phase as a whole by this)."""
        return self.hook_timeout * 2

    @property
    def stop_budget(self) -> float:
        """The longest a stop may take, from the request to the exit, in seconds."""
        return (self.pre_stop_delay + self.drain_timeout + self.cancel_grace
                + self.hooks_budget + self.checkpoint_timeout)

    def replace(self, **changes: object) -> Config:
        return dataclasses.replace(self, **changes)


def parse_bind(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9100` for IPv6) to (host, port); ConfigError otherwise."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{{metrics_bind}} must be HOST:PORT (for example 127.0.0.1:9100), "
                          f"got {literal(value)}", fields=["metrics_bind"])
    return host, int(port)


def _check_seconds(name: str, value: float, *, positive: bool = False) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{{{name}}} must be a finite number of seconds, got "
                          f"{literal(value)}", fields=[name])
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{{{name}}} must be {'>' if positive else '>='} 0 seconds, got "
                          f"{literal(value)}", fields=[name])


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{{{name}}} must be one of {', '.join(choices)}; got "
                          f"{literal(value)}", fields=[name])
