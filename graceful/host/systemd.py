"""Keep systemd informed (sd_notify): READY=1 once serving, then STOPPING=1 with
EXTEND_TIMEOUT_USEC taken from the time the stop has left, at every phase and drain tick,
so that TimeoutStopSec does not kill a drain that is still within its budget.

Only the supervisor (graceful/supervisor/) speaks to systemd: its pid is the service's
main process for good, and workers never see NOTIFY_SOCKET. A restart sends RELOADING=1
with MONOTONIC_USEC when it begins (Type=notify-reload waits for it after its SIGHUP), and
READY=1 once it has ended (new workers serve, or the old ones serve on after a failure).

The file-descriptor store: where the unit allows it (FileDescriptorStoreMax=, which systemd
254 and later announce in $FDSTORE), once serving we hand systemd a copy of each listening
socket we bound ourselves (FDSTORE=1, FDNAME=graceful-N, the descriptor in SCM_RIGHTS).
systemd keeps them across a `systemctl restart` and passes them to the new process as
LISTEN_FDS, so the socket never closes: connections wait in its queue, none is refused.
Sockets from a socket unit are systemd's already and are not stored again; Unix sockets
are not stored (graceful removes their path at stop, so a kept one would serve no one)."""

from __future__ import annotations

import array
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from graceful.bridge.stop import StopObserver
from graceful.http.activation import OWN_NAME
from graceful.logs import get_logger

if TYPE_CHECKING:
    from graceful.http.listeners import Listener

# Sent on top of the time left, so that the next message arrives before the extension ends.
EXTEND_MARGIN_S = 2.0


class SystemdNotifier(StopObserver):
    def __init__(self, address: str) -> None:
        # An address starting with "@" is in the abstract namespace.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        # Sent from the loop: a full queue (systemd not reading) drops the notification
        # (systemd.notify_failed, once) instead of blocking the loop, its requests and the stop.
        self._sock.setblocking(False)
        self._warned = False
        self._closed = False
        self.listeners: Callable[[], Sequence[Listener]] | None = None  # for the fd store

    @classmethod
    def from_environment(cls) -> SystemdNotifier | None:
        address = os.environ.get("NOTIFY_SOCKET")
        return cls(address) if address and hasattr(socket, "AF_UNIX") else None

    def ready(self) -> None:
        self._store_sockets()
        self._send("READY=1", "STATUS=serving")

    def _store_sockets(self) -> None:
        room = os.environ.get("FDSTORE", "")
        if self.listeners is None or not room.isdigit() or int(room) == 0:
            return
        kept = [listener for listener in self.listeners()
                if OWN_NAME.fullmatch(listener.name)
                and listener.sock.family in (socket.AF_INET, socket.AF_INET6)][:int(room)]
        for listener in kept:
            message = f"FDSTORE=1\nFDNAME={listener.name}".encode()
            try:
                # not socket.send_fds: before Python 3.13 it drops the address
                self._sock.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                array.array("i", [listener.sock.fileno()]))],
                                   0, self._address)
            except OSError as err:
                get_logger().warning("systemd.fdstore_failed", name=listener.name,
                                     error=str(err))
                return
        if kept:
            get_logger().info("systemd.fds_stored", names=[lst.name for lst in kept])

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=restarting")

    def reloaded(self, failure: str | None) -> None:
        """A restart ended: serving (with new workers, or the old ones after a failure)."""
        status = "serving" if failure is None else f"serving; restart failed: {failure}"
        self._send("READY=1", f"STATUS={status}")

    def workers_stopping(self, workers: int, time_left_s: float) -> None:
        """The supervisor's stop: its workers drain; systemd waits as long as they may."""
        self._send("STOPPING=1", f"STATUS=stopping: {workers} worker"
                   f"{'s' if workers != 1 else ''} draining", self._extend(time_left_s))

    def phase(self, name: str, time_left_s: float) -> None:
        self._send("STOPPING=1", f"STATUS=stopping: {name}", self._extend(time_left_s))

    def drain_progress(self, in_flight: int, time_left_s: float) -> None:
        self._send(f"STATUS=draining: {in_flight} in flight", self._extend(time_left_s))

    def stopped(self, exit_code: int) -> None:
        self._send(f"STATUS=stopped, exit code {exit_code}")
        self._sock.close()
        self._closed = True

    @staticmethod
    def _extend(time_left_s: float) -> str:
        return f"EXTEND_TIMEOUT_USEC={int((time_left_s + EXTEND_MARGIN_S) * 1e6)}"

    def _send(self, *lines: str) -> None:
        if self._closed:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as err:
            if not self._warned:  # a missing notify socket must not break the stop
                get_logger().warning("systemd.notify_failed", error=str(err))
                self._warned = True
