"""Start a worker on Windows: a fresh interpreter given exactly what it should have.

What POSIX passes as descriptors (spawn.py) goes here as follows:
- the listening sockets: `socket.share(pid)` once the process exists (the pid is needed),
  sent with the configuration as the first line on the worker's stdin, and taken with
  `socket.fromshare()` (graceful/lifecycle/worker_link.py);
- the ready pipe: an inheritable handle, passed to this process alone (the handle list of
  its STARTUPINFO), its number in the variable `ready_env` names;
- the orders (orders.py): one word a line on its stdin after the first. The pipe's end is
  also how the worker learns that the supervisor died (Windows has no PDEATHSIG): it then
  drains and exits, as a POSIX worker does on its SIGTERM;
- stdout and stderr: pipes the supervisor reads (worker_process.py);
- what it will start: in its Job object (windows_job.py), made before the first line is sent,
  ended once it has exited.

The worker runs DETACHED_PROCESS, with no console: Ctrl+C, Ctrl+Break, a console close,
logoff and shutdown go to every process attached to the console, whatever its process group
(a group of its own only turns Ctrl+C off), so a worker on the console would start its own
drain on the same event while the supervisor starts another: two stops racing, and the
supervisor's escalation (a second event forces) would count wrong. Without a console the
worker gets none of them; the supervisor, which owns the console's events, tells it. It is
also a process group of its own (CREATE_NEW_PROCESS_GROUP), so that no console event sent
to a group reaches it by accident.
"""

from __future__ import annotations

import base64
import contextlib
import json
import msvcrt  # type: ignore[import-not-found,unused-ignore]
import os
import queue
import socket
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from graceful.supervisor.spawn import Spawned
from graceful.supervisor.windows_job import WorkerJob

DETACHED_PROCESS = 0x00000008
CREATE_NEW_PROCESS_GROUP = 0x00000200


class _Worker:
    """A started worker's process and its control pipe, written by a thread of its own in
    order: the pipe holds a few KB and the worker reads it only once its imports are done
    (the first line) or when its reader thread runs; the supervisor's loop never waits."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        threading.Thread(target=self._write, daemon=True,
                         name=f"graceful-worker-{process.pid}-control").start()

    def send(self, line: bytes) -> None:
        self._lines.put(line)

    def close(self) -> None:
        self._lines.put(None)

    def _write(self) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        with contextlib.suppress(OSError, ValueError):
            while (line := self._lines.get()) is not None:
                stdin.write(line)
                stdin.flush()
        with contextlib.suppress(OSError, ValueError):
            stdin.close()


_workers: dict[int, _Worker] = {}  # by pid, until it exits
_jobs: dict[int, WorkerJob] = {}  # by the worker's pid, until what it left is ended


def spawn(argv: Sequence[str], env: Mapping[str, str], folder: str,
          sockets: Sequence[tuple[str, socket.socket]], config_json: str,
          ready_env: str) -> Spawned:
    """Start `argv` in `folder` with `env`; hand it `sockets` and `config_json`."""
    ready_r, ready_w = os.pipe()
    ready_handle = msvcrt.get_osfhandle(ready_w)
    try:
        os.set_handle_inheritable(ready_handle, True)
        environment = dict(env)
        environment[ready_env] = str(ready_handle)
        info = subprocess.STARTUPINFO()
        info.lpAttributeList = {"handle_list": [ready_handle]}
        process = subprocess.Popen(
            list(argv), cwd=folder, env=environment, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, startupinfo=info,
            creationflags=DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP)
    except BaseException:
        os.close(ready_r)
        raise
    finally:
        os.close(ready_w)
    worker = _workers[process.pid] = _Worker(process)
    if (job := WorkerJob.around(process.pid)) is not None:  # before its app can start one
        _jobs[process.pid] = job
    try:
        shared = [[name, base64.b64encode(sock.share(process.pid)).decode()]
                  for name, sock in sockets]
    except OSError:
        kill(process.pid)
        raise
    first = json.dumps({"config": json.loads(config_json), "sockets": shared}) + "\n"
    worker.send(first.encode())
    assert process.stdout is not None and process.stderr is not None
    # descriptors of our own, closed by their readers (platform.py): the Popen's file
    # objects would close the same numbers again when collected
    out, err = os.dup(process.stdout.fileno()), os.dup(process.stderr.fileno())
    process.stdout.close()
    process.stderr.close()
    return Spawned(process.pid, ready_r, out, err)


def tell(pid: int, word: str) -> None:
    """One order on the worker's control pipe; nothing if it has gone."""
    if (worker := _workers.get(pid)) is not None:
        worker.send(f"{word}\n".encode())


def kill(pid: int) -> None:
    """End the worker and what it started (its job) at once; TerminateProcess without one."""
    if (job := _jobs.pop(pid, None)) is not None:
        job.end()
    elif (worker := _workers.get(pid)) is not None:
        with contextlib.suppress(OSError):
            worker.process.kill()


def end_leftovers(pid: int) -> list[int]:
    """Once worker `pid` has exited: end what it started that still runs; their pids."""
    job = _jobs.pop(pid, None)
    return job.end() if job is not None else []


def wait(pid: int) -> int:
    """Block until the worker exits (on a reaper's thread); its exit code."""
    worker = _workers.get(pid)
    if worker is None:
        return 1
    code = worker.process.wait()
    worker.close()
    _workers.pop(pid, None)
    return code


def open_inherited(handle: str, flags: int) -> int:
    """A worker's side: the descriptor for a handle number its supervisor passed."""
    return msvcrt.open_osfhandle(int(handle), flags)


def take_sockets(shared: list[Any]) -> list[tuple[str, socket.socket]]:
    """A worker's side: the listening sockets its supervisor shared with it."""
    taken = []
    for name, data in shared:
        sock = socket.fromshare(base64.b64decode(data))
        sock.set_inheritable(False)
        sock.setblocking(False)
        taken.append((name, sock))
    return taken
