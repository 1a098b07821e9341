"""The stop budget against what the platform gives, checked at start.

A stop that takes longer than the supervisor waits is cut by a kill: requests, hooks and
the checkpoint flush with it. The worst case is Config.stop_budget (pre-stop delay + drain +
cancel grace + hooks + checkpoint). Where the platform's limit is known and the budget
exceeds it, `budget.exceeds_platform` says so at start, naming both numbers:

- Windows console: Windows ends the process 5 s after a console close and 20 s after a
  logoff or shutdown event (graceful then switches to the fast stop 1.5 s before).
- Windows container: `docker stop` sends CTRL_SHUTDOWN_EVENT and the process is ended after
  about 5 s whatever `-t` says (moby/moby#25982).
- systemd: TimeoutStopUSec of the unit, read with `systemctl show` (systemd puts it in no
  environment variable). With NOTIFY_SOCKET set graceful extends it while it stops
  (EXTEND_TIMEOUT_USEC), so it is no limit then; where systemctl cannot be run or the unit
  cannot be found, it is not checked.
- Kubernetes: terminationGracePeriodSeconds, when given as --termination-grace-period (a
  pod cannot read its own spec without API access).
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping

from graceful.config import Config
from graceful.logs import get_logger
from graceful.supervisor.worker_env import STOP_EXTENDED_ENV

WINDOWS_CONSOLE_CLOSE_S = 5.0
WINDOWS_LOGOFF_SHUTDOWN_S = 20.0
WINDOWS_CONTAINER_S = 5.0
SYSTEMCTL_TIMEOUT_S = 2.0


@dataclasses.dataclass(frozen=True)
class Limit:
    platform: str  # windows-console-close, windows-logoff, windows-container, systemd, kubernetes
    limit_s: float
    what: str


@dataclasses.dataclass(frozen=True)
class Facts:
    """What is known of where the process runs."""

    windows_console: bool = False
    windows_container: bool = False
    systemd_stop_timeout_s: float | None = None  # TimeoutStopUSec, when readable
    systemd_extends: bool = False  # NOTIFY_SOCKET: the stop timeout is extended as we go


def limits(config: Config, facts: Facts) -> list[Limit]:
    found = []
    if facts.windows_console:
        found += [Limit("windows-console-close", WINDOWS_CONSOLE_CLOSE_S,
                        "Windows ends a console process 5 s after its window is closed"),
                  Limit("windows-logoff", WINDOWS_LOGOFF_SHUTDOWN_S,
                        "Windows ends a console process 20 s after a logoff or shutdown")]
    if facts.windows_container:
        found.append(Limit("windows-container", WINDOWS_CONTAINER_S,
                           "a Windows container's process is ended about 5 s after docker "
                           "stop, whatever -t says"))
    if facts.systemd_stop_timeout_s is not None and not facts.systemd_extends:
        found.append(Limit("systemd", facts.systemd_stop_timeout_s,
                           "the unit's TimeoutStopSec (NOTIFY_SOCKET is not set, so graceful "
                           "cannot extend it)"))
    if config.termination_grace_period is not None:
        found.append(Limit("kubernetes", config.termination_grace_period,
                           "terminationGracePeriodSeconds (--termination-grace-period)"))
    return found


def exceeded(config: Config, facts: Facts) -> list[Limit]:
    budget = config.stop_budget
    return [limit for limit in limits(config, facts) if budget > limit.limit_s]


def check_at_start(config: Config, facts: Facts | None = None) -> list[Limit]:
    """Log `budget.exceeds_platform` for every limit the stop budget exceeds."""
    found = exceeded(config, facts if facts is not None else gather())
    log = get_logger()
    for limit in found:
        log.warning("budget.exceeds_platform", platform=limit.platform,
                    budget_s=round(config.stop_budget, 3), limit_s=limit.limit_s,
                    limit=limit.what)
    return found


def gather(*, windows_console: bool | None = None,
           environ: Mapping[str, str] | None = None) -> Facts:
    env = os.environ if environ is None else environ
    on_windows = sys.platform == "win32"
    timeout = None
    if not on_windows and env.get("INVOCATION_ID"):  # started by systemd
        timeout = systemd_stop_timeout(env)
    return Facts(
        windows_console=on_windows if windows_console is None else windows_console,
        windows_container=on_windows and in_windows_container(env),
        systemd_stop_timeout_s=timeout,
        # a worker's supervisor extends it (graceful/supervisor/worker_env.py)
        systemd_extends=bool(env.get("NOTIFY_SOCKET") or env.get(STOP_EXTENDED_ENV)),
    )


def in_windows_container(env: Mapping[str, str]) -> bool:
    """The ContainerType value exists in Windows containers only; their users are
    ContainerAdministrator or ContainerUser."""
    try:
        import winreg

        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE,
                            r"SYSTEM\CurrentControlSet\Control") as key:
            winreg.QueryValueEx(key, "ContainerType")
            return True
    except (ImportError, OSError):
        pass
    return env.get("USERNAME", "") in ("ContainerAdministrator", "ContainerUser")


def systemd_stop_timeout(env: Mapping[str, str],
                         run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
                         cgroup: str = "/proc/self/cgroup") -> float | None:
    """The unit's TimeoutStopUSec in seconds, or None when it cannot be read."""
    unit = _own_unit(cgroup)
    if unit is None:
        return None
    try:
        done = run(["systemctl", "show", "--property=TimeoutStopUSec", "--value", unit],
                   capture_output=True, text=True, timeout=SYSTEMCTL_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_timespan(done.stdout.strip()) if done.returncode == 0 else None


def _own_unit(cgroup: str) -> str | None:
    try:
        with open(cgroup) as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    for line in lines:
        for part in reversed(line.rpartition(":")[2].split("/")):
            if part.endswith(".service"):
                return part
    return None


_UNITS = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0,
          "min": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0}


def parse_timespan(text: str) -> float | None:
    """systemd's "1min 30s", "90s", "500ms"; None for "infinity" or what it cannot read."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)", text)
    if not parts or text == "infinity":
        return None
    if any(unit not in _UNITS for _, unit in parts):
        return None
    return sum(float(value) * _UNITS[unit] for value, unit in parts)
