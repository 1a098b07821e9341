"""The documentation says what the code does: README.md and docs/ checked against it.

What the docs do not write by hand (mkdocs-click, mkdocstrings, the generated tables in
docs/_hooks/generated.py) cannot drift; these tests hold the rest:

1. Every event the package logs has a sentence in the log-event reference, and every
   sentence names an event the code still logs; the exit-code sentences are ExitCode's.
2. Code in the pages is included from files the suite runs: a Python, TOML, YAML, INI or
   Dockerfile block in docs/ is one `--8<--` line; README's (GitHub shows no includes)
   are the text of a file under examples/. A block of a command's output is a file of
   docs/snippets/ whose first line is the command: running it gives the rest (7).
3. Every `graceful ...` line of a shell block parses with the real command line: an option
   renamed or removed fails here.
4. README: at most 1,500 words; its options table says what `graceful serve` says (env
   var, default); its relative links name files that exist.
5. The getting-started project (examples/first-app: the app, its test, its pytest config)
   passes in a folder of its own, run as the user runs it: `pytest`, no PYTHONPATH.
6. examples/embed_async.py serves and stops; examples/graceful.toml is a valid --config.
7. Each docs/snippets/*.txt is its command's output.
8. A test named in the docs exists; a module named in the layout page exists, and every
   module of the package is named there.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from graceful.cli.main import main
from graceful.errors import ExitCode

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
INCLUDED = {"python", "toml", "yaml", "ini", "dockerfile"}


def _generated():
    spec = importlib.util.spec_from_file_location("docs_generated",
                                                  DOCS / "_hooks" / "generated.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def _blocks(path: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(path.read_text())]


def test_every_logged_event_is_documented_and_every_documented_one_is_logged():
    """1. The log-event reference against the events the package's source logs."""
    generated = _generated()
    undocumented, gone = generated.undocumented()
    assert not undocumented, f"logged but not in docs/_hooks/reference.toml: {undocumented}"
    assert not gone, f"in docs/_hooks/reference.toml but never logged: {gone}"
    for name in ("stop.requested", "drain.deadline", "supervisor.ready", "http.access",
                 "pause.requested", "log.rotate_failed"):
        assert name in generated.log_events()  # each way an event is logged is found


def test_every_exit_code_has_its_sentence():
    """1. The exit-code table is ExitCode's members, each described."""
    assert set(_generated().texts()["exit-codes"]) == {code.name for code in ExitCode}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(DOCS)))
def test_code_in_the_pages_is_included_from_tested_files(page):
    """2. A code block in docs/ is an include, not a copy."""
    for language, body in _blocks(page):
        lines = [line for line in body.splitlines() if line.strip()]
        include = len(lines) == 1 and lines[0].startswith("--8<-- ")
        if language in INCLUDED:
            assert include, f"{page.name}: a {language} block written out: include its file"
        if language == "text" and any(line.startswith("$ graceful") for line in lines):
            assert include, f"{page.name}: command output written out: use docs/snippets"


def test_code_in_the_readme_is_the_text_of_tested_files():
    """2. README's code blocks are copies of files the suite runs, or of snippets."""
    sources = [p.read_text() for p in (ROOT / "examples").rglob("*") if p.is_file()]
    snippets = [p.read_text() for p in (DOCS / "snippets").glob("*.txt")]
    for language, body in _blocks(README):
        if language in INCLUDED:
            assert any(body in text for text in sources), f"README: not in examples/: {body}"
        if language == "text":
            assert any(body == text for text in snippets), f"README: not a snippet: {body}"


def _graceful_lines() -> list[tuple[str, str]]:
    found = []
    for path in [README, *PAGES]:
        for language, body in _blocks(path):
            if language not in ("sh", "console", ""):
                continue
            for line in body.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip().removeprefix("$ ")
                if line.startswith(("graceful ", ".venv/bin/graceful ")):
                    found.append((path.name, line))
    return found


@pytest.mark.parametrize(("page", "line"), _graceful_lines())
def test_every_graceful_command_in_the_docs_parses(page, line, monkeypatch):
    """3. The command line as the docs write it: options and values the CLI takes (from
    examples/, where the graceful.toml they name is)."""
    monkeypatch.chdir(ROOT / "examples")
    args = ["1" if word == "PID" else word for word in shlex.split(line)[1:]
            if not re.match(r"\d?>", word)]  # a redirection is the shell's
    command: click.Command = main
    ctx = command.make_context("graceful", list(args), resilient_parsing=False)
    while isinstance(command, click.Group):
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)


def test_readme_is_short():
    """4. A newcomer reads it in five minutes."""
    assert len(README.read_text().split()) <= 1500


def test_readme_options_table_says_what_serve_says():
    """4. The five options' env vars and defaults, as `graceful serve --help` has them."""
    serve = main.commands["serve"]
    options = {opt.opts[0]: opt for opt in serve.params if isinstance(opt, click.Option)}
    rows = re.findall(r"^\| `(--[\w-]+)` \| `(\w+)` \| ([^|]+) \|", README.read_text(), re.M)
    assert len(rows) == 5
    for flag, envvar, default in rows:
        option = options[flag]
        assert option.envvar == envvar
        default = default.strip().strip("`")
        if option.default is None:
            assert default == "none"
        else:
            assert float(default) == float(option.default), flag


def test_readme_links_name_files_that_exist():
    """4. README's relative links (into docs/, examples/) resolve."""
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README.read_text()):
        assert (ROOT / target).exists(), target


def test_the_getting_started_project_passes_on_its_own(tmp_path):
    """5. The first app and its test, copied to an empty folder: `pytest` there passes."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "examples" / "first-app", project,
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_the_async_embedding_example_serves_and_stops():
    """6. examples/embed_async.py: one request served, a clean stop, exit 0."""
    done = subprocess.run([sys.executable, "examples/embed_async.py"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "served: hello" in done.stdout and "exit code: 0" in done.stdout


def test_the_config_file_example_is_valid():
    """6. examples/graceful.toml as --config: every key known, every value valid."""
    from graceful.cli.serve_options import parse_serve

    config = parse_serve(["app:create_app", "--config",
                          str(ROOT / "examples" / "graceful.toml")]).config
    assert config.drain_timeout == 20 and config.pre_stop_delay == 5


@pytest.mark.parametrize("snippet", sorted((DOCS / "snippets").glob("*.txt")),
                         ids=lambda p: p.name)
def test_each_output_snippet_is_its_commands_output(snippet):
    """7. The first line is the command; running it prints the rest."""
    command, _, expected = snippet.read_text().partition("\n")
    assert command.startswith("$ graceful ")
    done = subprocess.run([sys.executable, "-m", "graceful", *shlex.split(command)[2:]],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout == expected, done.stderr


def _test_names() -> set[str]:
    names = set()
    for path in [*(ROOT / "tests").rglob("test_*.py"), *(ROOT / "examples").rglob("test_*.py")]:
        names.add(path.stem)
        names.update(re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.M))
    return names


def test_the_tests_the_docs_name_exist():
    """8. "Proven by test_x" in a page names a test the suite has."""
    known = _test_names()
    missing = {(page.name, name) for page in PAGES
               for name in re.findall(r"\b(test_\w+)", page.read_text())
               if name not in known and not name.endswith("_")}  # test_windows_*.py
    assert not missing


def layout_page_modules(text: str) -> set[str]:
    """The modules the layout page's tree names, as paths under graceful/ (a folder's
    entries are indented under it)."""
    folders: list[tuple[int, str]] = []
    named = set()
    for line in text.split("```text", 1)[1].split("examples/", 1)[0].splitlines()[2:]:
        match = re.match(r"^( +)(\w+/|\w+\.py)\s", line + " ")
        if not match:
            continue
        indent, name = len(match.group(1)), match.group(2)
        folders = [(i, f) for i, f in folders if i < indent]
        if name.endswith("/"):
            folders.append((indent, name))
        else:
            named.add("".join(f for _, f in folders) + name)
    return named


def test_the_layout_page_names_every_module_and_only_modules_that_exist():
    """8. docs/reference/layout.md and graceful/ agree, module by module and folder by
    folder."""
    named = layout_page_modules((DOCS / "reference" / "layout.md").read_text())
    package = ROOT / "graceful"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
    modules -= {m for m in modules if m.endswith("__init__.py") and m != "__init__.py"}
    modules -= {"__main__.py"}
    assert named - modules == set(), "named in the layout but not in graceful/"
    assert modules - named == set(), "in graceful/ but not in the layout page"
