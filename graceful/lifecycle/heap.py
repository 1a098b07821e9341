"""The startup heap, collected once and frozen before the first connection.

Why: a full collection of CPython's cyclic garbage collector walks
every container object, and stops the loop while it does. A server's startup heap
(modules, the app and its routes, the restored state) is most of those objects, and it lives
as long as the process. Left alone, the first full collection comes when the counters
say so, which in practice is while the first wave of connections is served (they create
many long-lived objects), and it walks the whole heap: 40 to 100 ms with ~50,000 objects on
a loaded 2-core machine, added to every response due in that time. Measured with
`python -m bench drain --scenario short --connections 500`: p99 323-333 ms on 300 ms
handlers against 304 ms under web.run_app, whose first full collection happened to fall
after the signal; the same with the collector disabled in both: equal.

`settle()` collects the young generations (what building the app and on_startup left) and
freezes everything that survives: later collections, full ones included, skip it. Frozen
objects are still freed by their reference count; only a reference cycle among them that
becomes garbage later is kept until `release()` (at the end of the serve).

Not a full collection first (it would cost the start time): it walked the whole startup
heap for nothing, 10 to 18 ms of the bench app's 250 ms start (40,000 objects) and 73 ms with
the 200,000-object test app, and found nothing to free in either; the old generation's
garbage, if an app leaves some, is frozen with the rest (memory, never a pause). The next
full collection then comes sooner (its counters were not reset), but walks only what was
made since the freeze.

`imports_frozen()` does the same earlier for `graceful serve`'s own imports (aiohttp,
structlog, graceful's runtime: 60,000 objects, most of the heap), before the app is
imported: with the collector off while they are imported, and frozen without a walk. The
young collections that would have run meanwhile (90 of them, each walking what the last
ones left) were 10 ms of the start; the garbage they would have found, 1,400 objects (about
0.2 MB), is kept until the serve ends. The app is imported, built and started with the
collector on, as under run_app.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

_imports_frozen = False  # the frozen objects are graceful's imports (imports_frozen())


@contextlib.contextmanager
def imports_frozen() -> Iterator[None]:
    """The imports in the block with the collector off, then frozen (CLI only: a program
    embedding graceful has its own heap)."""
    global _imports_frozen
    # Not get_freeze_count() once graceful froze its imports: it walks every frozen object.
    if not gc.isenabled() or (not _imports_frozen and gc.get_freeze_count()):
        yield
        return
    gc.disable()
    try:
        yield
    except BaseException:  # the start fails here (exit 2): nothing to freeze for
        gc.enable()
        raise
    gc.freeze()
    _imports_frozen = True
    gc.enable()


def thaw_imports() -> None:
    """Undo imports_frozen() where the process goes on (a start that failed, run in-process
    by a test); a serve that ran ends the process, or Heap.release() thawed them already."""
    global _imports_frozen
    if _imports_frozen:
        _imports_frozen = False
        gc.unfreeze()


class Heap:
    """settle() once the app is built; release() once the runtime is done with it."""

    def __init__(self) -> None:
        self._froze = False

    def settle(self) -> None:
        # An application that disabled the collector manages its heap itself; one that
        # froze it already is left as it set it (release would undo its freeze). Not
        # get_freeze_count() after imports_frozen(): it walks every frozen object (7 ms).
        if not gc.isenabled() or (not _imports_frozen and gc.get_freeze_count()):
            return
        gc.collect(1)
        gc.freeze()
        self._froze = True

    def release(self) -> None:
        """Unfreeze what settle() froze (and imports_frozen()), so that a process that serves
        again (tests, an embedding program) can collect what the last serve left behind."""
        global _imports_frozen
        if self._froze:
            self._froze = False
            _imports_frozen = False
            gc.unfreeze()
