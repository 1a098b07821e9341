"""Which values a checkpoint keeps: those that come back from the file as they went in.

Round-trip exactly: dict with str keys, list, str, int, float (finite), bool, None. Refused,
with the key path that holds them: any other type (datetime, set, bytes, objects), a
non-str key (JSON would bring `42` back as `"42"`), a tuple (back as a list), a subclass of
those types (defaultdict, OrderedDict, IntEnum, StrEnum: back as the plain type), NaN and
infinities (no JSON form), a string with a lone surrogate (not UTF-8), a circular reference.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from graceful.errors import CheckpointError, kind_of

_PLAIN = {dict: "dict", list: "list", str: "str", int: "int", float: "float"}


@dataclasses.dataclass(frozen=True)
class Problem:
    """A value the checkpoint cannot keep: where (`state["a"][3]`) and why."""

    key: Any  # the top-level key that holds it
    path: str
    error: str


class StateError(CheckpointError):
    """The state holds values a checkpoint cannot keep; `problems` names each one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.path}: {p.error}" for p in problems))


def check_state(state: Mapping[Any, Any]) -> None:
    """Raise StateError naming every value of `state` that would not come back from the
    checkpoint as it is; return None when all would. Cheap enough for an app's tests."""
    problems = [problem for key, value in state.items()
                for problem in check_item(key, value, strings=True)]
    if problems:
        raise StateError(problems)


def check_item(key: Any, value: Any, *, strings: bool) -> list[Problem]:
    """The problems of one top-level item. `strings`: also look for lone surrogates (only
    needed when its JSON is not ASCII)."""
    out: list[Problem] = []
    path = path_of(key)
    try:
        if type(key) is not str:
            out.append(Problem(key, path, _key_error(key)))
        _walk(key, value, path, out, set(), strings)
    except RecursionError:
        out.append(Problem(key, path, "nested too deep"))
    return out


def _walk(top: Any, value: Any, path: str, out: list[Problem], active: set[int],
          strings: bool) -> None:
    kind = type(value)
    if kind is str:
        if strings and not value.isascii() and not _utf8(value):
            out.append(Problem(top, path, "string is not valid Unicode (a lone surrogate)"))
    elif value is None or kind is int or kind is bool:
        return
    elif kind is float:
        if not math.isfinite(value):
            out.append(Problem(top, path, f"float {value!r} has no JSON form"))
    elif kind is dict or kind is list:
        if id(value) in active:
            out.append(Problem(top, path, "circular reference"))
            return
        active.add(id(value))
        if kind is dict:
            for key, item in value.items():
                where = path + _index(key)
                if type(key) is not str:
                    out.append(Problem(top, where, _key_error(key)))
                _walk(top, item, where, out, active, strings)
        else:
            for index, item in enumerate(value):
                _walk(top, item, f"{path}[{index}]", out, active, strings)
        active.discard(id(value))
    else:
        out.append(Problem(top, path, _type_error(value)))


def _type_error(value: Any) -> str:
    kind = type(value)
    if kind is tuple:
        return "tuple would come back as a list"
    for base, name in _PLAIN.items():
        if isinstance(value, base):
            return f"{kind.__name__} would come back as a plain {name}"
    return f"{kind.__name__} is not a JSON type"


def _key_error(key: Any) -> str:
    return (f"key {key!r} is {kind_of(key)}: JSON keys are strings "
            f"(it would come back as {str(key)!r})")


def path_of(key: Any) -> str:
    """How a top-level key is named in reports: state["hits"], state[42]."""
    return "state" + _index(key)


def _index(key: Any) -> str:
    return f"[{json.dumps(key, ensure_ascii=False)}]" if type(key) is str else f"[{key!r}]"


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
