"""A restart's hand-off of idle keep-alive connections, the supervisor's part (POSIX).

The supervisor never touches a client's connection: it gives each old worker a channel to
one of the new workers (spread over them), a socketpair whose ends it sends on each one's
hand-off socket (SCM_RIGHTS) just before it tells the old worker to stop. The two workers
then pass the connections between them over that channel (graceful/http/handoff.py), and
it works on when the supervisor is gone. A worker that cannot be given its end is left
without a channel: its peer's end closes with ours, and an old worker without a channel
closes its idle connections as a stop does.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence

from graceful.supervisor.worker_process import WorkerProcess

SEND = b"send"  # your end: hand your idle connections over it
TAKE = b"take"  # your end: serve the connections that come on it


def link(old: Sequence[WorkerProcess], new: Sequence[WorkerProcess]) -> int:
    """Give each of `old` a channel to one of `new`; how many were given."""
    takers = [worker for worker in new if worker.handoff is not None]
    givers = [worker for worker in old if worker.handoff is not None]
    linked = 0
    for number, giver in enumerate(givers if takers else []):
        taker = takers[number % len(takers)]
        sending, taking = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with sending, taking, contextlib.suppress(OSError):  # gone: no channel
            assert giver.handoff is not None and taker.handoff is not None
            socket.send_fds(taker.handoff, [TAKE], [taking.fileno()])
            socket.send_fds(giver.handoff, [SEND], [sending.fileno()])
            linked += 1
    return linked
