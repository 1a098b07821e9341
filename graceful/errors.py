"""The exit-code table and the exceptions the library raises; only cli.py exits."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What a finished process tells its supervisor (DESIGN.md, contract)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    DRAIN_DEADLINE = 3  # work was cut: requests cancelled, or threads abandoned at exit
    CHECKPOINT_FAILED = 4
    HOOK_FAILED = 5


# When several things went wrong, the exit code names the worst: an unexpected error,
# then lost state, then cancelled requests, then a failed hook.
_SEVERITY = [
    ExitCode.OK,
    ExitCode.HOOK_FAILED,
    ExitCode.DRAIN_DEADLINE,
    ExitCode.CHECKPOINT_FAILED,
    ExitCode.ERROR,
    ExitCode.USAGE,
]


def worst(*codes: ExitCode) -> ExitCode:
    """The most severe of `codes` (OK when there are none)."""
    return max(codes, key=_SEVERITY.index, default=ExitCode.OK)


class GracefulError(Exception):
    """Base class of the errors graceful raises on purpose."""

    exit_code = ExitCode.ERROR


class ConfigError(GracefulError):
    """Bad options, a bad MODULE:ATTR or a loop that is not installed (exit 2)."""

    exit_code = ExitCode.USAGE


class StartupError(GracefulError):
    """The app could not start: a factory or an on_startup handler raised or hung (exit 1)."""


class CheckpointError(GracefulError):
    """A checkpoint file that cannot be read, verified or written (exit 4)."""

    exit_code = ExitCode.CHECKPOINT_FAILED
