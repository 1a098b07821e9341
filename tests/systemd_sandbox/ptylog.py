#!/usr/bin/env python3
"""Run a command with a fresh pseudo-terminal whose slave name is passed in $SDBOX_CONSOLE
(start-systemd.sh bind-mounts it over /dev/console in the namespace, where systemd as a
container's PID 1 writes its log), copying everything written to it into LOGFILE.
Usage: ptylog.py LOGFILE PIDFILE CMD...   (PIDFILE gets CMD's pid). Exits when CMD exits."""

import contextlib
import os
import select
import subprocess
import sys
import termios


def main(log_path: str, pid_path: str, cmd: list[str]) -> None:
    master, slave = os.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no \n -> \r\n
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    with open(log_path, "ab", buffering=0) as log:
        child = subprocess.Popen(cmd, env=dict(os.environ, SDBOX_CONSOLE=os.ttyname(slave)),
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True)
        with open(pid_path, "w") as f:
            f.write(f"{child.pid}\n")
        while True:
            readable, _, _ = select.select([master], [], [], 0.2)
            if readable:
                with contextlib.suppress(OSError):  # EIO once no one holds the terminal
                    log.write(os.read(master, 65536))
            elif child.poll() is not None:
                break


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
