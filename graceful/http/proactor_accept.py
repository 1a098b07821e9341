"""Windows' Proactor loop: serve the connection its pending accept already took, before the
loop's server closes.

The Proactor loop keeps one AcceptEx posted per listening socket. Windows completes it as a
client connects, taking the connection off the listen queue into a socket of the loop's;
the loop hears of it at its next poll. `Server.close()` cancels the accept future, and
asyncio then closes that socket: a client whose connection was accepted (its request maybe
sent) is reset. So before the close, an accept that has completed is let through the loop,
which serves its connection like any other and posts the next accept.

asyncio's private names this relies on (3.11 to 3.13; `tests/wine/test_wine_proactor.py`
fails loudly when they move):
- `loop._accept_futures`: the listening socket's fileno -> its accept's future;
- `future._ov.pending`: the future's Overlapped, False once AcceptEx has completed (None
  once the loop has taken the result).
Other loops (selector loops, winloop) have no `_accept_futures`: nothing is done there.
"""

from __future__ import annotations

import asyncio
from typing import Any

# Each round is one loop iteration; a listener whose accept keeps completing (a flood of
# new connections) is closed after this many, as before.
MAX_ROUNDS = 64


def supported(loop: asyncio.AbstractEventLoop) -> bool:
    return isinstance(getattr(loop, "_accept_futures", None), dict)


async def let_accepted_in(server: asyncio.AbstractServer) -> int:
    """Run the loop until no listening socket of `server` has a completed accept the loop
    has not taken; the number of loop iterations that took."""
    loop = asyncio.get_running_loop()
    if not supported(loop):
        return 0
    futures: dict[int, Any] = loop._accept_futures  # type: ignore[attr-defined]
    filenos = [sock.fileno() for sock in getattr(server, "sockets", ())]
    for rounds in range(MAX_ROUNDS):
        if not any(_completed(futures.get(fileno)) for fileno in filenos):
            return rounds
        await asyncio.sleep(0)
    return MAX_ROUNDS


def _completed(future: Any) -> bool:
    """An accept that has a connection the loop has not yet served."""
    if future is None:
        return False
    if future.done():  # its result taken; the callback that serves it has yet to run
        return not future.cancelled()
    overlapped = getattr(future, "_ov", None)
    return overlapped is not None and not overlapped.pending
