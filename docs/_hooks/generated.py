"""Tables the documentation takes from the code instead of repeating it.

    exit codes   graceful.errors.ExitCode: every member, in order; the sentence for each
                 is in reference.toml, and the build fails when a code has none or a
                 sentence names a code that is gone.
    log events   every event the package logs, found by reading its source (ast): a call
                 log.<level>("event.name", field=...) (any logger object), the Windows
                 service log's _note("event.name", ...), (log.info if x else log.debug)(...)
                 (either level), a name bound to a string constant
                 (ACCESS_EVENT), and f"{request.action}.x" (a pause or a resume). The
                 fields are the keyword arguments of those calls, the level their method.
                 The sentence for each is in reference.toml; tests/test_docs.py checks
                 that the two sets are the same.

mkdocs runs this file as a hook (mkdocs.yml `hooks:`): a page that holds
`<!-- generated: exit-codes -->` or `<!-- generated: log-events -->` gets the table there.
It also publishes bench/results/*.png, the benchmark figures, at the same path in the site,
so that the benchmarks page shows the files bench writes without a copy of them.
"""

from __future__ import annotations

import ast
import dataclasses
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "graceful"
TEXTS = Path(__file__).with_name("reference.toml")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
FIGURES = "bench/results"


@dataclasses.dataclass
class Event:
    name: str
    levels: set[str] = dataclasses.field(default_factory=set)
    fields: set[str] = dataclasses.field(default_factory=set)
    more_fields: bool = False  # a **mapping was passed too: the text says which
    modules: set[str] = dataclasses.field(default_factory=set)


def texts() -> dict[str, dict[str, str]]:
    with TEXTS.open("rb") as file:
        return tomllib.load(file)


def _assignments(tree: ast.Module) -> dict[str, ast.expr]:
    return {target.id: node.value for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def _constants(assigned: dict[str, ast.expr]) -> dict[str, str]:
    """Module-level names bound to a string, directly or through another such name
    (`EVENT = ACCESS_EVENT`)."""
    constants: dict[str, str] = {}
    while True:
        found = {name: value.value if isinstance(value, ast.Constant) else constants[value.id]
                 for name, value in assigned.items() if name not in constants and (
                     (isinstance(value, ast.Constant) and isinstance(value.value, str))
                     or (isinstance(value, ast.Name) and value.id in constants))}
        if not found:
            return constants
        constants.update(found)


def _names(arg: ast.expr, constants: dict[str, str]) -> list[str]:
    """The event names a call's first argument can be."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return [arg.value]
    if isinstance(arg, ast.Name) and arg.id in constants:
        return [constants[arg.id]]
    if (isinstance(arg, ast.JoinedStr) and len(arg.values) == 2
            and isinstance(arg.values[0], ast.FormattedValue)
            and ast.unparse(arg.values[0].value) == "request.action"
            and isinstance(arg.values[1], ast.Constant)):
        from graceful.bridge.controls import PauseAction

        return [f"{action.value}{arg.values[1].value}" for action in PauseAction]
    return []


def _levels(func: ast.expr) -> set[str]:
    """The levels a call logs at: log.<level>(...), _note(...) (the Windows service's own
    log file: warning), or either of two, `(log.info if news else log.debug)(...)`."""
    if isinstance(func, ast.IfExp):
        body, orelse = _levels(func.body), _levels(func.orelse)
        return body | orelse if body and orelse else set()
    if isinstance(func, ast.Attribute) and func.attr in LEVELS:
        return {"error" if func.attr == "exception" else func.attr}
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return {"warning"} if name == "_note" else set()


def log_events() -> dict[str, Event]:
    """Every event the package logs, by name."""
    assigned: dict[str, ast.expr] = {}
    trees = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        trees[path] = ast.parse(path.read_text(), str(path))
        assigned.update(_assignments(trees[path]))
    constants = _constants(assigned)
    events: dict[str, Event] = {}
    for path, tree in trees.items():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            levels = _levels(node.func)
            if not levels:
                continue
            for event_name in _names(node.args[0], constants):
                if "." not in event_name or " " in event_name:
                    continue  # a message, not one of our dotted events
                event = events.setdefault(event_name, Event(event_name))
                event.levels.update(levels)
                event.modules.add(module)
                for keyword in node.keywords:
                    if keyword.arg == "exc_info":
                        continue  # structlog's traceback, not a field
                    if keyword.arg is None:
                        event.more_fields = True
                    else:
                        event.fields.add(keyword.arg)
    return dict(sorted(events.items()))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def log_events_table() -> str:
    described = texts()["events"]
    rows = ["| event | level | fields | what it says |", "|---|---|---|---|"]
    for event in log_events().values():
        fields = ", ".join(f"`{field}`" for field in sorted(event.fields))
        if event.more_fields:
            fields += " and more (see the text)" if fields else "see the text"
        levels = ", ".join(sorted(event.levels))
        rows.append(f"| `{event.name}` | {levels} | {fields} | "
                    f"{_cell(described.get(event.name, ''))} |")
    return "\n".join(rows)


def exit_codes_table() -> str:
    from graceful.errors import ExitCode

    described = texts()["exit-codes"]
    rows = ["| code | name | meaning |", "|---|---|---|"]
    for code in ExitCode:
        rows.append(f"| {int(code)} | `{code.name}` | {_cell(described[code.name])} |")
    return "\n".join(rows)


GENERATORS = {"exit-codes": exit_codes_table, "log-events": log_events_table}


# mkdocs hooks ------------------------------------------------------------------------------

def on_page_markdown(markdown: str, **_: Any) -> str:
    for name, generate in GENERATORS.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for png in sorted((ROOT / FIGURES).glob("*.png")):
        files.append(File(png.relative_to(ROOT).as_posix(), str(ROOT), config["site_dir"],
                          config["use_directory_urls"]))
    return files


def undocumented() -> tuple[set[str], set[str]]:
    """(events logged but not described, events described but never logged)."""
    logged, described = set(log_events()), set(texts()["events"])
    return logged - described, described - logged

