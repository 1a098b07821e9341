"""The installed aiohttp against what graceful relies on (aiohttp_internals.REQUIREMENTS).

`check()` verifies each requirement against the installed aiohttp and returns a line per
thing that moved (tests/test_aiohttp_canary.py runs it on every aiohttp of the CI matrix,
scripts/test-matrix). `ensure_supported()` runs at the start of `graceful serve` and
`graceful.run`: an aiohttp outside SUPPORTED, or one whose names or signatures moved, is a
one-line ConfigError (exit 2) rather than an AttributeError at the first connection or in
the middle of a stop. At start only the names and signatures are checked (a few
microseconds each); the behaviour probes, which drive a RequestHandler over a fake
transport, run in the canary.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from graceful.errors import ConfigError
from graceful.http.aiohttp_internals import REQUIREMENTS, Requirement
from graceful.http.aiohttp_range import SUPPORTED, in_range, refusal


def installed_version() -> str:
    return aiohttp.__version__


def ensure_supported() -> None:
    """Raise ConfigError (exit 2), one line, unless the installed aiohttp is in SUPPORTED
    and every name and signature graceful relies on is where it expects it."""
    _ensure(installed_version())


@functools.cache  # graceful serve and graceful.run both ask, in the same process
def _ensure(version: str) -> None:
    if not in_range(version):
        raise ConfigError(refusal(version))
    moved = check(behaviours=False)
    if moved:
        raise ConfigError(f"aiohttp {version} is installed and its internals moved "
                          f"({'; '.join(moved)}); graceful supports aiohttp{SUPPORTED}")


def check(behaviours: bool = True) -> list[str]:
    """One line per requirement the installed aiohttp does not meet (empty: all met)."""
    moved = []
    for req in REQUIREMENTS:
        if req.kind != "behaviour":
            problem = _check_name(req)
            if problem:
                moved.append(f"{req.owner}.{req.name}: {problem} (needed: {req.why})")
    if behaviours:
        failed = _run_probes()
        for req in REQUIREMENTS:
            if req.kind == "behaviour" and req.name in failed:
                moved.append(f"{req.owner}: no longer true: {req.name}: {failed[req.name]} "
                             f"(needed: {req.why})")
        moved += [f"probe: {name}: {error}" for name, error in failed.items()
                  if not any(req.name == name for req in REQUIREMENTS)]
    return moved


# -- names and signatures --------------------------------------------------------------------


def _check_name(req: Requirement) -> str | None:
    module_name, _, class_name = req.owner.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return f"{req.owner} is gone"
    if req.kind == "class":
        return None
    if req.kind == "attribute":
        return None if _has_attribute(cls, req.name) else "attribute is gone"
    func = getattr(cls, req.name, None)
    if not callable(func):
        return "method is gone"
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None  # a builtin without a signature: nothing to compare
    missing = [p for p in req.params if p not in params]
    if missing:
        return f"parameters {', '.join(missing)} are gone"
    if req.coroutine is not None and inspect.iscoroutinefunction(func) != req.coroutine:
        return "is now async" if not req.coroutine else "is no longer async"
    return None


def _has_attribute(cls: type, name: str) -> bool:
    """On the class (a slot, a method, a property, a namedtuple field) or assigned by one of
    its __init__ methods."""
    if hasattr(cls, name):
        return True
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        code = getattr(init, "__code__", None)
        if code is not None and name in code.co_names:
            return True
    return False


# -- behaviours ------------------------------------------------------------------------------


def _run_probes() -> dict[str, str]:
    """Drive aiohttp's RequestHandler over a fake transport; return {behaviour: what
    happened instead} for each that does not hold."""
    from graceful.http import aiohttp_probes  # imported only when probing

    failed: dict[str, str] = {}
    loop = asyncio.new_event_loop()
    try:
        for probe in aiohttp_probes.PROBES:
            _run_one(loop, probe, failed)
    finally:
        loop.close()
    return failed


def _run_one(loop: asyncio.AbstractEventLoop,
             probe: Callable[[dict[str, str]], Coroutine[Any, Any, None]],
             failed: dict[str, str]) -> None:
    try:
        loop.run_until_complete(asyncio.wait_for(probe(failed), 5))
    except Exception as err:  # a probe that crashes is itself a change to report
        failed[probe.__name__] = f"{type(err).__name__}: {err}"

