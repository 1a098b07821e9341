"""Writing a checkpoint file atomically, and the start-time probe of its folder.

The write goes to a temporary file in the same folder (mode 0600), is fsynced, the current
file is hard-linked to PATH.prev (the fallback generation) and the new one is `os.replace`d
over PATH, then the folder is fsynced on POSIX. A kill at any instant leaves PATH holding a
whole generation: the old one or the new one, never a torn file. One process writes one
file at a time (Checkpointer's single writer thread, and the lock), so the temporary names
need not be unique per write.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from graceful.checkpoint.fileformat import previous_path, refuse_symlink
from graceful.errors import CheckpointError

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> int:
    """Replace `path` with `data` atomically, keeping the current file as PATH.prev.
    Returns the number of bytes written."""
    refuse_symlink(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    size = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_NOFOLLOW | _O_BINARY, 0o600)
        try:
            for piece in [data] if isinstance(data, bytes) else data:
                view = memoryview(piece)
                size += len(view)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.exists():
            _keep_previous(path)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}") from err
    return size


def probe_folder(path: Path) -> None:
    """Refuse now a folder the stop could not write to: create, hard-link (for PATH.prev)
    and remove a file there. Permission bits say too little (root, read-only mounts,
    filesystems without hard links)."""
    folder = Path(os.path.abspath(path.parent))
    if not folder.exists():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} is not a folder")
    probe = folder / f".{path.name}.{os.getpid()}.probe"
    link = probe.with_name(probe.name + ".link")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_BINARY,
                     0o600)
        try:
            os.write(fd, b"probe")
        finally:
            os.close(fd)
        os.link(probe, link)
    except OSError as err:
        raise CheckpointError(f"checkpoint folder {folder} is not writable: "
                              f"{err.strerror or err}") from err
    finally:
        for name in (link, probe):
            with contextlib.suppress(OSError):
                os.unlink(name)


def _keep_previous(path: Path) -> None:
    prev = previous_path(path)
    link_tmp = path.with_name(f".{prev.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link_tmp)
    os.link(path, link_tmp)
    os.replace(link_tmp, prev)


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return  # Windows has no directory fsync; NTFS journals the rename.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
