"""State that survives a stop: a JSON mapping written atomically with a generation and a
checksum, by one process at a time.

    fileformat.py    the file: canonical JSON, checksum, verification, PATH.prev fallback
    writer.py        the atomic write, and the start-time probe of the folder
    lock.py          PATH.lock, held for the life of the process
    values.py        which values round-trip, and the key path of those that do not
    checkpointer.py  the loop side: snapshot once per tick, one writer thread
"""

from graceful.checkpoint.checkpointer import Checkpointer, FlushResult
from graceful.checkpoint.fileformat import (
    FORMAT,
    VERSION,
    Snapshot,
    decode,
    encode,
    load,
    previous_path,
    read,
)
from graceful.checkpoint.lock import CheckpointLock, lock_path
from graceful.checkpoint.values import Problem, StateError, check_state
from graceful.checkpoint.writer import probe_folder, write_atomic

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointLock",
    "Checkpointer",
    "FlushResult",
    "Problem",
    "Snapshot",
    "StateError",
    "check_state",
    "decode",
    "encode",
    "load",
    "lock_path",
    "previous_path",
    "probe_folder",
    "read",
    "write_atomic",
]
