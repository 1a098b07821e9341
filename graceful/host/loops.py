"""Event loop choice: a string key, imported lazily (uvicorn's LOOP_FACTORIES)."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Callable

from graceful.errors import ConfigError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

# The module that provides each optional loop, with its `new_event_loop`.
_OPTIONAL = {"uvloop": "uvloop", "winloop": "winloop"}
_PLATFORM_LOOP = "winloop" if sys.platform == "win32" else "uvloop"


def loop_factory(name: str, shared_sockets: bool = False) -> tuple[str, LoopFactory]:
    """The loop called `name` ("auto", "asyncio", "uvloop", "winloop") and its factory.

    "auto" takes uvloop on POSIX and winloop on Windows when installed, asyncio otherwise.
    A loop asked for by name that is not installed is a ConfigError. `shared_sockets`: the
    listening sockets are shared with other processes (a Windows worker): there asyncio's
    loop is the selector one, since the Proactor's accept registers the listening socket
    with its completion port, which a socket shared with another process's port refuses
    (WinError 87; asyncio then closes the listener: uvicorn#342, #1317). winloop (libuv)
    falls back to emulated completion by itself. The selector loop on Windows handles at
    most 512 sockets: winloop for more.
    """
    asyncio_loop: LoopFactory = asyncio.new_event_loop
    if shared_sockets and sys.platform == "win32":
        asyncio_loop = asyncio.SelectorEventLoop
    if name == "auto":
        factory = _import_optional(_PLATFORM_LOOP)
        return (_PLATFORM_LOOP, factory) if factory else ("asyncio", asyncio_loop)
    if name == "asyncio":
        return "asyncio", asyncio_loop
    if name not in _OPTIONAL:
        raise ConfigError(f"unknown loop {name!r}; choose auto, asyncio, uvloop or winloop")
    if name != _PLATFORM_LOOP:
        raise ConfigError(f"loop {name!r} is not available on {sys.platform}")
    factory = _import_optional(name)
    if factory is None:
        raise ConfigError(
            f"loop {name!r} is not installed: pip install {name} (the "
            f"{'windows' if name == 'winloop' else name} extra)"
        )
    return name, factory


def _import_optional(name: str) -> LoopFactory | None:
    try:
        module = importlib.import_module(_OPTIONAL[name])
    except ImportError:
        return None
    return module.new_event_loop
