"""The stop budget against the platform's limits, checked at start.

1. Kubernetes: --termination-grace-period below the budget gives budget.exceeds_platform
   at start naming both numbers (the real CLI); a budget that fits says nothing.
2. Windows console (close 5 s, logoff/shutdown 20 s) and a Windows container (about 5 s).
3. systemd: TimeoutStopUSec read with systemctl for the process's own unit; not a limit
   when NOTIFY_SOCKET is set (graceful extends it); not checked when it cannot be read.
"""

from __future__ import annotations

import asyncio
import subprocess

from graceful.config import Config
from graceful.lifecycle import budget


async def test_kubernetes_grace_period_below_the_budget_is_said_at_start(serve):
    """1."""
    server = serve("tests.apps:basic", "--drain-timeout", "30",
                   "--termination-grace-period", "30")
    event = server.wait_for("budget.exceeds_platform")
    assert (event["platform"], event["budget_s"], event["limit_s"]) == ("kubernetes", 46, 30)
    assert event["level"] == "warning"
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    fits = serve("tests.apps:basic", "--drain-timeout", "15", "--hook-timeout", "2",
                 "--checkpoint-timeout", "2", "--termination-grace-period", "30")
    fits.signal()
    assert await asyncio.to_thread(fits.wait) == 0
    assert "budget.exceeds_platform" not in fits.names()


def test_windows_console_and_container():
    """2."""
    config = Config(drain_timeout=10)  # 26 s in all
    found = budget.exceeded(config, budget.Facts(windows_console=True))
    assert [(f.platform, f.limit_s) for f in found] == [("windows-console-close", 5.0),
                                                        ("windows-logoff", 20.0)]
    small = Config(drain_timeout=2.5, cancel_grace=0.5, hook_timeout=0.25,
                   checkpoint_timeout=1)  # the Windows image's defaults: 4.5 s
    assert budget.exceeded(small, budget.Facts(windows_console=True,
                                               windows_container=True)) == []
    found = budget.exceeded(config, budget.Facts(windows_container=True))
    assert [(f.platform, f.limit_s) for f in found] == [("windows-container", 5.0)]
    assert budget.in_windows_container({"USERNAME": "ContainerUser"})


def test_systemd_stop_timeout(tmp_path):
    """3."""
    cgroup = tmp_path / "cgroup"
    cgroup.write_text("0::/system.slice/web.service\n")
    calls = []

    def systemctl(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout="1min 30s\n")

    assert budget.systemd_stop_timeout({}, run=systemctl, cgroup=str(cgroup)) == 90.0
    assert calls[0][-1] == "web.service"
    config = Config()  # 46 s
    assert budget.exceeded(config, budget.Facts(systemd_stop_timeout_s=30.0))[0].limit_s == 30
    assert budget.exceeded(config, budget.Facts(systemd_stop_timeout_s=30.0,
                                                systemd_extends=True)) == []
    assert budget.parse_timespan("infinity") is None
    assert budget.parse_timespan("500ms") == 0.5
    (tmp_path / "none").write_text("0::/user.slice/session-1.scope\n")
    assert budget.systemd_stop_timeout({}, run=systemctl, cgroup=str(tmp_path / "none")) is None


def test_a_workers_stop_timeout_is_extended_by_its_supervisor():
    """Under systemd a worker has no NOTIFY_SOCKET (it is the supervisor's): the supervisor
    extends the stop timeout for it, and tells it so in its environment."""
    from graceful.lifecycle.budget import gather
    from graceful.supervisor.worker_env import worker_environment

    supervisor = {"NOTIFY_SOCKET": "/run/systemd/notify", "PATH": "/usr/bin"}
    worker = worker_environment(supervisor, 1)
    assert "NOTIFY_SOCKET" not in worker
    assert gather(windows_console=False, environ=worker).systemd_extends
    assert not gather(windows_console=False,
                      environ=worker_environment({"PATH": "/usr/bin"}, 1)).systemd_extends
