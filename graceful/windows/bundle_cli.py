"""`graceful bundle`: the command line of graceful/windows/bundle.py."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from graceful.errors import GracefulError


@click.command()
@click.argument("target", metavar="MODULE:ATTR")
@click.option("--name", help="The executable's name (NAME.exe); default: MODULE's last part.")
@click.option("--onedir", is_flag=True,
              help="A folder (dist/NAME/NAME.exe and its files) instead of one file: starts "
                   "faster, as nothing is unpacked at each start.")
@click.option("--app-dir", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="The folder MODULE is imported from.")
@click.option("--paths", "paths", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Another folder to import from: a package of your own (repeatable).")
@click.option("--collect", multiple=True, metavar="PACKAGE",
              help="Take all of PACKAGE: its submodules, data files and metadata "
                   "(repeatable; MODULE's own package data is always taken).")
@click.option("--add-data", multiple=True, metavar="SRC:DEST",
              help="A file or folder to put in the bundle, under DEST (. for its top; "
                   "repeatable).")
@click.option("--dist", "dist_dir", type=click.Path(file_okay=False, path_type=Path),
              default="dist", show_default=True, help="Where the executable is written.")
@click.option("--build-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="PyInstaller's work folder, kept for faster rebuilds; default: "
                   "build/bundle-NAME.")
def bundle(target: str, name: str | None, onedir: bool, app_dir: Path,
           paths: tuple[Path, ...], collect: tuple[str, ...], add_data: tuple[str, ...],
           dist_dir: Path, build_dir: Path | None) -> None:
    """Build one Windows executable of the app MODULE:ATTR with graceful, aiohttp, winloop,
    pywin32 and Python itself, with PyInstaller (on Linux through graceful's Wine set-up).

    \b
    NAME.exe takes graceful's commands with the app built in:
      NAME.exe serve --port 8080
      NAME.exe service install web -- --port 8080 --checkpoint C:\\data\\web.json
      NAME.exe check --within 30
    Before it says so, the built executable is run once (`NAME.exe check`): an import or a
    data file missing from the bundle fails the build, in one line. Exit 0 built; 1 the
    build failed; 2 usage error or the app does not load in the bundle.
    """
    from graceful.windows import bundle as b
    from graceful.windows.frozen import is_frozen

    try:
        if is_frozen():  # sys.executable is this bundle, not an interpreter to build with
            raise b.BundleError("a bundle cannot build bundles: run graceful bundle from a "
                                "Python installation")
        name = name or target.partition(":")[0].rsplit(".", 1)[-1]
        spec = b.Bundle(
            target=target, name=name, app_dir=app_dir.resolve(), dist_dir=dist_dir.resolve(),
            build_dir=(build_dir or Path("build") / f"bundle-{name}").resolve(),
            onedir=onedir, paths=tuple(p.resolve() for p in paths), collect=collect,
            add_data=tuple(b.parse_add_data(value) for value in add_data))
        click.echo(f"building {spec.executable} with PyInstaller (a few minutes)...")
        built = b.build(spec)
    except GracefulError as err:
        click.echo(f"graceful bundle: error: {err}", err=True)
        sys.exit(int(err.exit_code))
    click.echo(b.describe(built))
