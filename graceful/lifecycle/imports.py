"""Imports the serve path refuses: optional extras of a dependency that graceful never uses.

structlog imports rich and better_exceptions at its own import when they are installed
(structlog/dev.py and structlog/tracebacks.py: `try: import rich ... except ImportError`),
to offer pretty tracebacks and frame locals. graceful's renderers use neither (plain
tracebacks, never frame locals: graceful/logs.py), and rich is often installed without being
asked for (twine, typer, pip-audit bring it): 45 to 80 ms of CPU, a third of bare aiohttp's
whole start, before the first request. structlog has no setting for it, so `graceful serve`,
which owns the process's logging, imports structlog as it would where they are not
installed: for the length of that one import a finder at the head of `sys.meta_path` answers
"no module named rich", the ImportError structlog already expects. Nothing is left behind
in `sys.modules` or on `sys.meta_path`; a module already imported (by a sitecustomize, say)
is not refused, and neither is anything imported later: the app can import rich itself.

What changes for the app: structlog's own defaults that name rich or better_exceptions
(`structlog.dev.ConsoleRenderer()`'s default traceback formatter, `structlog.dev
.rich_traceback`) behave as if rich were not installed. Under `graceful serve` structlog's
configuration is graceful's in any case. `graceful.run` (a program embedding graceful)
imports structlog as usual: that program decides.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

STRUCTLOG_EXTRAS = ("rich", "better_exceptions")


class _Refuser:
    """A meta path finder that refuses `names` and their submodules."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (not imported by graceful serve: "
                "graceful/lifecycle/imports.py)", name=fullname)


@contextlib.contextmanager
def refused(*names: str) -> Iterator[None]:
    """Inside the block, importing one of `names` (not imported yet) fails as if it were not
    installed."""
    finder = _Refuser({name for name in names if name not in sys.modules})
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def structlog_without_extras() -> contextlib.AbstractContextManager[None]:
    """Where structlog is not imported yet: refuse its optional tracebacks' imports."""
    if "structlog" in sys.modules:
        return contextlib.nullcontext()
    return refused(*STRUCTLOG_EXTRAS)
