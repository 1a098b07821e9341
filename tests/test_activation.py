"""Sockets handed to this process (graceful/http/activation.py): what is taken, what is refused.

The end-to-end cases (systemd-socket-activate, a restart's successor) are in
test_systemd.py and test_restart_e2e.py; these check the announcement itself, in-process,
with descriptors placed at 3, 4 by a child process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from graceful.http.activation import inherited_sockets, split_metrics

CHILD = textwrap.dedent("""
    import json, os, socket, sys
    from graceful.http.activation import inherited_sockets
    from graceful.errors import ConfigError
    os.environ["LISTEN_PID"] = str(os.getpid()) if sys.argv[1] == "mine" else "1"
    try:
        found = inherited_sockets()
    except ConfigError as err:
        print(json.dumps({"error": str(err)}))
    else:
        print(json.dumps({"names": [n for n, _ in found or []],
                          "ports": [s.getsockname()[1] for _, s in found or []],
                          "left": [k for k in os.environ if k.startswith("LISTEN_")]}))
""")


def run_child(fds: list[int], whose: str, names: str = "") -> str:
    env = dict(os.environ, LISTEN_FDS=str(len(fds)), LISTEN_FDNAMES=names)

    def place() -> None:  # descriptors at 3, 4, ... as systemd passes them
        for i, fd in enumerate(fds):
            os.dup2(fd, 3 + i)

    # close_fds=False: the child's own closing of descriptors would undo the dup2s
    return subprocess.run([sys.executable, "-c", CHILD, whose], env=env, close_fds=False,
                          preexec_fn=place, capture_output=True, text=True, check=True,
                          timeout=30).stdout


@pytest.fixture
def listening():
    import socket

    socks = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
    yield socks
    for sock in socks:
        sock.close()


def test_sockets_named_for_this_process_are_taken_and_the_variables_removed(listening):
    out = run_child([s.fileno() for s in listening], "mine", "web:admin")
    ports = [s.getsockname()[1] for s in listening]
    assert out.strip() == (f'{{"names": ["web", "admin"], "ports": {ports}, "left": []}}')


def test_sockets_meant_for_another_pid_are_not_taken(listening):
    assert '"names": []' in run_child([listening[0].fileno()], "other")


def test_a_descriptor_that_is_not_a_listening_socket_is_refused(tmp_path):
    with open(tmp_path / "file", "w") as f:
        out = run_child([f.fileno()], "mine", "web")
    assert "inherited descriptor 3 (web) is not a socket" in out


def test_nothing_announced_is_none():
    assert inherited_sockets({}) is None


def test_the_metrics_socket_is_set_apart_from_the_apps(listening):
    """A restart names the metrics listener graceful-metrics: it is not served as one of
    the app's listeners."""
    web, metrics = listening
    found = [("graceful-0", web), ("graceful-metrics", metrics)]
    assert split_metrics(found) == ([("graceful-0", web)], metrics)
    assert split_metrics([("graceful-0", web)]) == ([("graceful-0", web)], None)
