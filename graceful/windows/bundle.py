"""`graceful bundle MODULE:ATTR`: one Windows executable holding the app, graceful, aiohttp,
winloop, pywin32 and the interpreter, built with PyInstaller.

On Windows PyInstaller runs in the current interpreter; on Linux in the Windows CPython of
this project's Wine set-up (scripts/wine-setup.sh). The executable is then run once, `NAME.exe
check`, so that an import or a data file missing from the bundle is one line now, not a
service that fails at its start (see docs/deploying/windows-bundle.md).

The command line of the executable is graceful's own with the target baked in
(graceful/windows/frozen.py).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path

from graceful.errors import ConfigError, ExitCode, GracefulError

# Imported by name only at run time (loop keys, inside functions pywin32 calls): listed so
# that PyInstaller's analysis takes them. win32timezone: win32serviceutil needs it for
# service configs with dates, the classic missing import of frozen pywin32 services.
HIDDEN_IMPORTS = ("winloop", "win32timezone", "servicemanager", "win32serviceutil")
# Extension modules that import their siblings from C: PyInstaller cannot see those imports.
ALL_SUBMODULES = ("winloop", "aiohttp", "multidict", "yarl", "propcache", "frozenlist")
# Nothing a served app uses: test helpers, plotting, the GUI toolkit of the embeddable zip.
EXCLUDED = ("tkinter", "pytest", "_pytest", "matplotlib", "PyInstaller",
            "graceful.pytest_plugin", "graceful.testing")
NOT_BUNDLED = ("testing", "pytest_plugin")
DISTRIBUTION = "aiohttp-graceful"
MISSING_IMPORT = re.compile(r"Hidden import '([^']+)' not found")


class BundleError(GracefulError):
    """The bundle could not be built."""


class NotInBundle(BundleError):
    """A module asked for cannot be found, or the built executable cannot load the app."""

    exit_code = ExitCode.USAGE


@dataclasses.dataclass(frozen=True)
class Bundle:
    """What to build: TARGET's app in NAME.exe under `dist_dir`."""

    target: str
    name: str
    app_dir: Path
    dist_dir: Path
    build_dir: Path
    onedir: bool = False
    paths: tuple[Path, ...] = ()
    collect: tuple[str, ...] = ()
    add_data: tuple[tuple[Path, str], ...] = ()

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def executable(self) -> Path:
        folder = self.dist_dir / self.name if self.onedir else self.dist_dir
        return folder / f"{self.name}.exe"


@dataclasses.dataclass(frozen=True)
class Built:
    executable: Path
    size_bytes: int
    took_s: float
    check_output: str


class WindowsPython:
    """The Windows interpreter PyInstaller runs in: this one on Windows, the Wine set-up's
    on Linux (its paths seen through drive Z:, its output through a pipe)."""

    def __init__(self) -> None:
        self.native = sys.platform == "win32"
        self.env = dict(os.environ)
        if self.native:
            self.python = sys.executable
            return
        root = Path(os.environ.get("GRACEFUL_WINE_ROOT")
                    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
                    / "graceful-wine")
        prefix = root / "prefix"
        if not (prefix / "drive_c/Python312/python.exe").exists() or not shutil.which("wine"):
            raise BundleError(f"graceful bundle on {sys.platform} runs PyInstaller under Wine: "
                              f"no Windows python in {prefix} (run scripts/wine-setup.sh of "
                              "graceful's repository, or build on Windows)")
        self.env.update(WINEPREFIX=str(prefix), WINEARCH="win64", WINEDEBUG="-all",
                        WINEDLLOVERRIDES="mscoree,mshtml=")
        self.python = r"C:\Python312\python.exe"

    def path(self, path: Path) -> str:
        return str(path) if self.native else "Z:" + str(path.resolve()).replace("/", "\\")

    def run(self, program: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        argv = [program, *args] if self.native else ["wine", program, *args]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  env=self.env, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise BundleError(f"{Path(program).name} did not finish in {timeout:g}s") from err
        return subprocess.CompletedProcess(argv, done.returncode, _text(done.stdout),
                                           _text(done.stderr))


def build(bundle: Bundle, python: WindowsPython | None = None,
          timeout: float = 1800) -> Built:
    """Build NAME.exe, then run `NAME.exe check` in it: BundleError with one line when
    PyInstaller fails, misses a module asked for, or the app does not load in the result."""
    _check_sources(bundle)
    python = python or WindowsPython()
    started = time.monotonic()
    entry = _stage(bundle)
    done = python.run(python.python, "-m", "PyInstaller",
                      *pyinstaller_args(bundle, entry, python.path), timeout=timeout)
    output = done.stdout + done.stderr
    missing = MISSING_IMPORT.findall(output)
    if missing:
        raise NotInBundle(f"cannot find module {', '.join(sorted(set(missing)))} to put in "
                          f"the bundle (--paths DIR for a folder of your own, or install it "
                          "into the interpreter that builds)")
    if done.returncode != 0 or not bundle.executable.exists():
        raise BundleError(f"PyInstaller failed ({done.returncode}): {_last_error(output)}")
    took = time.monotonic() - started
    check = python.run(python.path(bundle.executable), "check", timeout=300)
    if check.returncode != 0:
        line = _last_error(check.stdout + check.stderr)
        raise NotInBundle(f"{bundle.executable.name} was built but cannot load "
                          f"{bundle.target}: {line}")
    return Built(bundle.executable, _size(bundle), took, check.stdout)


def pyinstaller_args(bundle: Bundle, entry: Path, path: Callable[[Path], str]) -> list[str]:
    """PyInstaller's command line for BUNDLE, `path` giving a path as the (Windows)
    interpreter that builds sees it."""
    args = ["--noconfirm", "--log-level", "WARN", "--noupx", "--console",
            "--name", bundle.name, "--onedir" if bundle.onedir else "--onefile",
            "--distpath", path(bundle.dist_dir), "--workpath", path(bundle.build_dir / "work"),
            "--specpath", path(bundle.build_dir)]
    for folder in (bundle.build_dir / "src", bundle.app_dir, *bundle.paths):
        args += ["--paths", path(folder)]
    for module in (bundle.module, *HIDDEN_IMPORTS, *_graceful_modules()):
        args += ["--hidden-import", module]
    for package in ALL_SUBMODULES:
        args += ["--collect-submodules", package]
    top = bundle.module.split(".")[0]
    for package in dict.fromkeys((*bundle.collect, top)):
        args += _collect(package, (bundle.app_dir, *bundle.paths), path,
                         explicit=package != top)
    for source, dest in bundle.add_data:
        args += ["--add-data", f"{path(source)};{dest}"]
    for info in sorted((bundle.build_dir / "meta").glob("*.dist-info")):
        args += ["--add-data", f"{path(info)};{info.name}"]
    for module in EXCLUDED:
        args += ["--exclude-module", module]
    return [*args, path(entry)]


def entry_script(target: str) -> str:
    return ("# Written by graceful bundle: the command line of the app, target baked in.\n"
            "from graceful.windows.frozen import main\n\n"
            f"main({target!r})\n")


def parse_add_data(value: str) -> tuple[Path, str]:
    """`SRC:DEST` (PyInstaller's form; DEST a folder inside the bundle, `.` its top)."""
    source, sep, dest = value.rpartition(":")
    if not sep or not source or not dest or len(source) == 1:  # `C:x` is a drive, not SRC
        raise ConfigError(f"--add-data {value!r}: expected SRC:DEST (DEST a folder inside the "
                          "bundle, . for its top)")
    return Path(source), dest


def _stage(bundle: Bundle) -> Path:
    """graceful's package copied next to the entry script: the build imports the graceful
    that runs this command (not another copy, and on Linux not this interpreter's
    site-packages, whose compiled modules are Linux ones)."""
    source = Path(__file__).resolve().parents[1]
    staged = bundle.build_dir / "src" / "graceful"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _stage_metadata(bundle.build_dir / "meta")
    entry = bundle.build_dir / f"{bundle.name}_entry.py"
    entry.write_text(entry_script(bundle.target), encoding="utf-8")
    return entry


def _stage_metadata(folder: Path) -> None:
    """graceful's distribution metadata, for `NAME.exe --version`: the building interpreter
    may have graceful from a checkout (the Wine set-up's .pth), with no metadata to copy."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return
    info = folder / f"{DISTRIBUTION.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\n"
                                   f"Version: {version}\n", encoding="utf-8")


def _graceful_modules() -> Iterator[str]:
    """Every module of graceful but the test helpers: many are imported inside functions
    or by name, and a served app must never meet a missing one."""
    root = Path(__file__).resolve().parents[1]
    for file in sorted(root.rglob("*.py")):
        parts = file.relative_to(root).with_suffix("").parts
        if parts[0] in NOT_BUNDLED or "__pycache__" in parts:
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(("graceful", *parts))


def _check_sources(bundle: Bundle) -> None:
    if ":" not in bundle.target:
        raise ConfigError(f"{bundle.target!r} is not MODULE:ATTR (for example "
                          "myapp.web:create_app)")
    for folder in (bundle.app_dir, *bundle.paths):
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such folder")
    for source, _ in bundle.add_data:
        if not source.exists():
            raise ConfigError(f"--add-data {source}: no such file or folder")


def _collect(package: str, folders: Sequence[Path], path: Callable[[Path], str],
             explicit: bool) -> list[str]:
    """PyInstaller's options that take all of PACKAGE: modules and data files.

    A package in the app's folders is walked here: PyInstaller's --collect-* look for it in
    a subprocess of the building interpreter, which only sees --paths through PYTHONPATH,
    and the embeddable CPython (this project's Wine set-up) ignores PYTHONPATH. A package
    installed in the building interpreter is left to --collect-all; the app's own module,
    when it is not a package, needs nothing more."""
    root = next((folder / package for folder in folders
                 if (folder / package / "__init__.py").is_file()), None)
    if root is None:
        return ["--collect-all", package] if explicit else []
    args = []
    for file in sorted(root.rglob("*")):
        relative = file.relative_to(root.parent)
        if not file.is_file() or "__pycache__" in relative.parts or file.suffix == ".pyc":
            continue
        if file.suffix == ".py":
            module = relative.with_suffix("").parts
            module = module[:-1] if module[-1] == "__init__" else module
            args += ["--hidden-import", ".".join(module)]
        else:
            args += ["--add-data", f"{path(file)};{relative.parent.as_posix()}"]
    return args


def _size(bundle: Bundle) -> int:
    if not bundle.onedir:
        return bundle.executable.stat().st_size
    return sum(f.stat().st_size for f in bundle.executable.parent.rglob("*") if f.is_file())


def _last_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else "no output"


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\r", "")


def describe(built: Built) -> str:
    kind = "folder" if built.executable.parent.name == built.executable.stem else "file"
    return (f"built {built.executable} ({built.size_bytes / 1e6:.1f} MB in the {kind}) in "
            f"{built.took_s:.0f}s; it loads its app (`{built.executable.name} check` ok)")
