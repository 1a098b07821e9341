"""The shipped unit (deploy/systemd/graceful-app.service and .socket) under a real systemd:
`systemctl start`, `reload` and `stop` with a request in flight and a stream of counter
updates checkpointed, as an operator runs them (tests/systemd_sandbox says how).

What each test proves holds for the systemd it ran under: 252 (Debian 12, RHEL 9) on the
machine these were written on. 253 (Type=notify-reload) and 254 (pidfd tracking) may differ.

After every stop the same verdict (`_stop_and_judge`): the request in flight was answered 200; the
checkpoint holds every answered update and no more than were sent; systemd's log shows no
SIGKILL to the unit's processes, no main pid that is not its child, no failure; the unit
ended inactive.

No update is sent once `systemctl stop` is issued (those in flight are counted): the socket
unit stays listening, and a connection after the stop would start the service again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import systemd_sandbox
from tests.systemd_sandbox import UNIT, Client, Sandbox

pytestmark = pytest.mark.timeout(90)

RELOAD_TIMEOUT_S = 15.0


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A real systemd with the shipped unit installed; stopped by its pid at the end."""
    reason = systemd_sandbox.unavailable()
    if reason is not None:
        pytest.skip(reason)
    box = Sandbox.start(tmp_path)
    try:
        yield box
    finally:
        box.stop()


def _require(condition: bool, premise: str) -> None:
    """A step the scenario needs, not a finding about what it tests: its failure is an error
    even in a test marked xfail (which expects an AssertionError)."""
    if not condition:
        pytest.fail(f"the scenario did not happen: {premise}")


def _start(sandbox: Sandbox) -> Client:
    """`systemctl start` (Type=notify: it returns at READY=1), then a client that serves a
    stream of updates."""
    started = sandbox.systemctl("start", UNIT, timeout=60)
    _require(started.returncode == 0,
             f"systemctl start: {started.stderr} {sandbox.app_log()[-2000:]}")
    client = sandbox.client()
    client.ask("updates")
    return client


def _reload(sandbox: Sandbox) -> float:
    """`systemctl reload`; returns when systemd has heard READY=1 after it (monotonic time):
    the reload is done as systemd sees it. With Type=notify, systemd 252 ends the reload job
    either there or, when RELOADING=1 comes after ExecReload='s kill has exited, before."""
    since = len(sandbox.log())
    reloaded = sandbox.systemctl("reload", UNIT)
    _require(reloaded.returncode == 0, f"systemctl reload: {reloaded.stderr}")
    sandbox.wait_log(rf"{UNIT}: Got notification message from PID \d+ \(.*\bREADY=1", since,
                     RELOAD_TIMEOUT_S)
    return time.monotonic()


def _new_process_serves(client: Client, before: int) -> None:
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while client.ask("pid")["pid"] == before:
        _require(time.monotonic() < deadline,
                 f"a new process serves within {RELOAD_TIMEOUT_S} s of the reload")
        time.sleep(0.05)


def _in_flight(client: Client, seconds: float) -> None:
    started = client.ask(f"slow {seconds}")["slow"]
    _require(started.startswith("status 200"), f"a {seconds} s request in flight: {started}")


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def _stop_and_judge(sandbox: Sandbox, client: Client) -> list[str]:
    """End the stream of updates (those in flight may still be answered), `systemctl stop`,
    wait for the updates and the request in flight; what went wrong, each as a sentence."""
    client.ask("stop-updates")
    stop_at = time.monotonic()
    stopped = sandbox.systemctl("stop", UNIT, timeout=60)
    tally = client.ask("tally")
    slow = client.ask("result", timeout=60)
    _require(slow["ended"] > stop_at, f"the request in flight at the stop ended "
                                      f"{stop_at - slow['ended']:.2f} s before it")
    problems = []
    if stopped.returncode != 0:
        problems.append(f"systemctl stop exited {stopped.returncode}: {stopped.stderr}")
    if not slow["answered"]:
        problems.append(f"the request in flight was not answered: {slow['result']}")
    count = (sandbox.checkpoint() or {}).get("count", 0)
    if count < max(tally["answered"], tally["max_value"]):
        problems.append(f"answered updates lost: the checkpoint holds {count}, "
                        f"{tally['answered']} were answered, the last answer said "
                        f"{tally['max_value']}")
    if count > tally["sent"]:
        problems.append(f"the checkpoint holds {count} updates, {tally['sent']} were sent")
    log = sandbox.log().splitlines()
    alien = [line for line in log if "which is not our child" in line]
    if alien:
        problems.append(f"systemd's main pid is not its child: {alien[:2]}")
    killed = [line for line in log if UNIT in line and "SIGKILL" in line]
    if killed:
        problems.append(f"systemd sent SIGKILL: {killed[:3]}")
    failed = [line for line in log if UNIT in line and "Failed with result" in line]
    if failed:  # the state shown below may be a later start's
        problems.append(f"systemd saw the unit fail: {failed[:2]}")
    shown = sandbox.show("ActiveState", "Result")
    if shown != {"ActiveState": "inactive", "Result": "success"}:
        problems.append(f"the unit ended {shown}")
    return problems


def _assert_none(problems: list[str], sandbox: Sandbox) -> None:
    assert not problems, "\n".join([*problems, f"{sandbox.version}'s log: "
                                                f"{sandbox.state}/systemd.log"])


def test_stop_with_a_request_in_flight(sandbox: Sandbox) -> None:
    """Proves systemd 252:
    1. `systemctl start`; a stream of answered counter updates; a 3 s request in flight;
    2. `systemctl stop`: the request is answered, no answered update is lost, no SIGKILL,
       the unit ends inactive."""
    client = _start(sandbox)
    _in_flight(client, 3)
    _assert_none(_stop_and_judge(sandbox, client), sandbox)


def test_stop_0_3_s_after_reload(sandbox: Sandbox) -> None:
    """Proves systemd 252:
    1. `systemctl start`; a stream of answered counter updates; a 5 s request in flight;
    2. `systemctl --no-block reload` (ExecReload=: `graceful restart`): the new worker
       starts while the old one serves the request (systemd hears RELOADING=1);
    3. `systemctl stop` 0.3 s later, the reload still under way (systemd cancels its job):
       the new worker is ended, the old one drains: the request is answered, no answered
       update is lost, no SIGKILL, the unit ends inactive."""
    client = _start(sandbox)
    _in_flight(client, 5)
    since = len(sandbox.log())
    asked = sandbox.systemctl("--no-block", "reload", UNIT)
    _require(asked.returncode == 0, f"systemctl reload: {asked.stderr}")
    sandbox.wait_log(rf"{UNIT}: Got notification message from PID \d+ \(.*\bRELOADING=1",
                     since, RELOAD_TIMEOUT_S)
    _sleep_until(time.monotonic() + 0.3)
    _assert_none(_stop_and_judge(sandbox, client), sandbox)


def test_stop_4_s_after_reload(sandbox: Sandbox) -> None:
    """Proves systemd 252:
    1. `systemctl start`; a stream of answered counter updates;
    2. `systemctl reload`, until systemd hears READY=1;
    3. 2.5 s later a 3 s request, on the new process;
    4. `systemctl stop` 4 s after the reload: the request is answered, no answered update is
       lost, no SIGKILL, the unit ends inactive."""
    client = _start(sandbox)
    reloaded = _reload(sandbox)
    _sleep_until(reloaded + 2.5)
    _in_flight(client, 3)
    _sleep_until(reloaded + 4.0)
    _assert_none(_stop_and_judge(sandbox, client), sandbox)


def test_main_pid_kept_across_reload(sandbox: Sandbox) -> None:
    """Proves systemd 252:
    1. `systemctl start`: MainPID is the process systemd started;
    2. `systemctl reload`, until systemd hears READY=1 and a new process answers: MainPID
       is the same, and systemd never supervised a process that is not its child."""
    client = _start(sandbox)
    main_pid = sandbox.show("MainPID")["MainPID"]
    serving = client.ask("pid")["pid"]
    _reload(sandbox)
    _new_process_serves(client, serving)
    assert sandbox.show("MainPID")["MainPID"] == main_pid
    assert [line for line in sandbox.log().splitlines() if "which is not our child" in line] \
        == []
