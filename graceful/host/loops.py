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

    "auto" takes uvloop on POSIX and winloop on Windows when installed, asyncio otherwise;
    but a Windows worker (`shared_sockets`: its listening sockets are shared with the other
    workers) gets asyncio's selector loop: winloop (libuv) keeps 32 accepts posted in
    advance on each listening socket, and the connections Windows completes into them as
    an old worker closes its listener at a restart are closed with it (under Wine, 21
    requests lost in 4 of 10 console restarts; 0 in 20 on the selector loop:
    docs/deploying/windows.md). The Proactor loop cannot serve a shared socket: its accept
    registers the listening socket with its completion port, which a socket already
    registered by another process refuses (WinError 87; asyncio then closes the listener:
    uvicorn#342, #1317). The selector loop's select() takes at most 512 sockets on Windows:
    capped_selector.py stops accepting before. A loop asked for by name that is not
    installed is a ConfigError.
    """
    asyncio_loop: LoopFactory = asyncio.new_event_loop
    windows_worker = shared_sockets and sys.platform == "win32"
    if windows_worker:
        from graceful.host.capped_selector import CappedSelectorEventLoop

        asyncio_loop = CappedSelectorEventLoop
    if name == "auto":
        factory = None if windows_worker else _import_optional(_PLATFORM_LOOP)
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
