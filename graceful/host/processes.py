"""Whether a process runs, for `graceful restart` and the tests."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent (Linux's /proc tells; elsewhere a
    signal 0 does, zombies included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
