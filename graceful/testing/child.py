"""`python -m graceful.testing.child serve MODULE:ATTR ...`: the real command line, with the
served app given the marking middleware (graceful/testing/marks.py) as it is built.

The plugin starts this in the test's folder (the pytest rootdir by default), so MODULE is
imported from there as `graceful serve` would, with no PYTHONPATH.
"""

from __future__ import annotations


def main() -> None:
    from graceful.cli.main import main as cli
    from graceful.lifecycle import loader
    from graceful.testing.marks import add_marks

    loader.on_built.append(add_marks)
    cli(prog_name="graceful")


if __name__ == "__main__":
    main()
