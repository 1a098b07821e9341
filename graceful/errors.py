"""The exit-code table and the exceptions the library raises; only cli.py exits."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence


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


MEANINGS = {
    ExitCode.ERROR: "an unexpected error",
    ExitCode.USAGE: "a usage or configuration error",
    ExitCode.DRAIN_DEADLINE: "work was cut: requests cancelled at the drain deadline, or "
                             "threads abandoned",
    ExitCode.CHECKPOINT_FAILED: "the checkpoint could not be written: what changed since "
                                "the last one written is lost",
    ExitCode.HOOK_FAILED: "a shutdown hook failed or timed out",
}


def worst(*codes: ExitCode) -> ExitCode:
    """The most severe of `codes` (OK when there are none)."""
    return max(codes, key=_SEVERITY.index, default=ExitCode.OK)


class GracefulError(Exception):
    """Base class of the errors graceful raises on purpose."""

    exit_code = ExitCode.ERROR


class ConfigError(GracefulError):
    """Bad options, a bad MODULE:ATTR or a loop that is not installed (exit 2).

    `message` may name Config fields as `{field}` (listed in `fields`): str() says them as
    Config spells them, for a caller of the library; the command line says them as the user
    wrote them (`naming`): a flag, an environment variable, a key of the --config file.
    """

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, fields: Sequence[str] = ()) -> None:
        self.template, self.fields = message, tuple(fields)
        super().__init__(self.naming(lambda field: field))

    def naming(self, name: Callable[[str], str]) -> str:
        """The message with each field said as `name(field)`."""
        if not self.fields:
            return self.template
        return self.template.format_map({field: name(field) for field in self.fields})


def kind_of(value: object) -> str:
    """`an int`, `a list`: the type of `value` with its article, for messages."""
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def literal(value: object) -> str:
    """repr(value), to put in a ConfigError's message next to `{field}` names."""
    return repr(value).replace("{", "{{").replace("}", "}}")


class StartupError(GracefulError):
    """The app could not start: a factory or an on_startup handler raised or hung (exit 1)."""


class CheckpointError(GracefulError):
    """A checkpoint file that cannot be read, verified or written (exit 4)."""

    exit_code = ExitCode.CHECKPOINT_FAILED
