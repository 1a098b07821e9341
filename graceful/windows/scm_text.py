"""What `graceful service status` and the control commands print of the SCM's answers."""

from __future__ import annotations

from graceful.bridge import win32 as w

START_NAMES = {w.SERVICE_AUTO_START: "auto", w.SERVICE_DEMAND_START: "manual", 4: "disabled"}


def status_line(name: str, status: w.ServiceStatus) -> str:
    """`NAME: STATE pid=... checkpoint=... wait_hint_ms=... win32_exit=... exit_code=...`"""
    line = f"{name}: {status.state_name}"
    if status.pid:
        line += f" pid={status.pid}"
    if status.checkpoint or status.wait_hint_ms:
        line += f" checkpoint={status.checkpoint} wait_hint_ms={status.wait_hint_ms}"
    if status.win32_exit_code:
        line += f" win32_exit={status.win32_exit_code} exit_code={status.service_exit_code}"
    return line


def config_lines(config: w.ServiceConfig, status: w.ServiceStatus) -> list[str]:
    """Start type, account, dependencies, recovery actions and the last exit code."""
    start = START_NAMES.get(config.start_type, str(config.start_type))
    start += " (delayed)" if config.delayed_start else ""
    lines = [f"  start: {start}, account {config.account}, depends on "
             f"{', '.join(config.dependencies) or '-'}"]
    if config.failure_actions is None:
        lines.append("  recovery: not readable from this SCM")
    else:
        restarts = [delay for action, delay in config.failure_actions
                    if action == w.SC_ACTION_RESTART]
        lines.append(f"  recovery: restart after {restarts[0] / 1000:g}s, {len(restarts)} "
                     f"times; counts reset after {config.failure_reset_s}s" if restarts
                     else "  recovery: none")
    if status.win32_exit_code == w.ERROR_SERVICE_SPECIFIC_ERROR:
        lines.append(f"  last exit: {status.service_exit_code} (service-specific; win32 "
                     f"{status.win32_exit_code})")
    else:
        lines.append(f"  last exit: win32 {status.win32_exit_code}")
    return lines
