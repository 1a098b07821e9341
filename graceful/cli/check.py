"""`graceful check`: build the app without serving it, and the stop budget as a table.

The rows are Config's per-phase fields (Config.hooks_budget for the hooks phase, as
deadline.py uses it); the worst case is Config.stop_budget plus the exit's wait for work left
to threads (graceful/lifecycle/threads.py RESERVE_S). That sum is what a
supervisor must allow between its stop signal and its kill.
"""

from __future__ import annotations

import asyncio
import dataclasses

from graceful.config import Config
from graceful.errors import GracefulError, StartupError
from graceful.http import health, tls
from graceful.lifecycle import appstate, loader, threads


@dataclasses.dataclass(frozen=True)
class Row:
    phase: str
    seconds: float
    source: str


def budget_rows(config: Config) -> list[Row]:
    return [
        Row("pre-stop delay", config.pre_stop_delay, "--pre-stop-delay (accepting, readiness 503)"),
        Row("drain", config.drain_timeout, "--drain-timeout"),
        Row("cancel grace", config.cancel_grace, "--cancel-grace"),
        Row("hooks", config.hooks_budget,
            "2 x --hook-timeout: graceful hooks, then on_cleanup and cleanup_ctx"),
        Row("checkpoint", config.checkpoint_timeout,
            "--checkpoint-timeout (reserved" + ("" if config.checkpoint else
                                               "; no --checkpoint: left to threads") + ")"),
        Row("threads", threads.RESERVE_S, "the exit's wait for work left to threads"),
    ]


def worst_case(config: Config) -> float:
    return config.stop_budget + threads.RESERVE_S


def render(rows: list[Row], worst: float) -> str:
    width = max(len(r.phase) for r in rows)
    lines = [f"{'phase':<{width}}  {'seconds':>8}  set by"]
    lines += [f"{r.phase:<{width}}  {r.seconds:>8.1f}  {r.source}" for r in rows]
    lines.append(f"{'worst case':<{width}}  {worst:>8.1f}  from the stop signal to the exit")
    return "\n".join(lines)


def build_app(source: loader.AppSource, config: Config, name: str = "the factory") -> None:
    """Build the app as serve would, on a loop of its own, without on_startup or binding;
    raise ConfigError for what serve would refuse at start, StartupError when the factory
    (`name`) raises."""
    tls.server_context(config)  # the files load, the key matches, the password is right
    loop = asyncio.new_event_loop()
    try:
        try:
            app = loop.run_until_complete(loader.build_app(source))
        except GracefulError:
            raise
        except Exception as err:
            raise StartupError(f"{name} raised {type(err).__name__}: {err}") from err
        appstate.adopt(app, {})
        if config.health:
            health.Health(config.livez_path, config.readyz_path, is_ready=lambda: False,
                          phase=lambda: "starting").refuse_taken_paths(app)
    finally:
        loop.close()
