"""The entry point of an executable built by `graceful bundle`: graceful's own command line
with the app's MODULE:ATTR baked in, and the service host the SCM starts.

`app.exe serve --port 8080` is `graceful serve TARGET --port 8080`; `check` and `service
install NAME [-- options]` get the target the same way, so the bundle serves the app it was
built for and nothing else. `app.exe service install` registers the executable itself as
the service's binary: `"C:\\...\\app.exe" service-host NAME ... -- TARGET options`
(service_cli.host_command); that hidden first argument hands the process to pywin32's
servicemanager before click sees anything, as `python -m graceful.windows.service_host`
does for an installed graceful.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# The first argument of the command line the SCM runs (never typed by hand).
HOST_COMMAND = "service-host"
# Commands whose first argument is MODULE:ATTR: the bundle puts its own there.
TARGETED = ("serve", "check")


def is_frozen() -> bool:
    """Whether this process is an executable built by PyInstaller."""
    return bool(getattr(sys, "frozen", False))


def argv_with_target(args: Sequence[str], target: str) -> list[str]:
    """The command line arguments (without the program) with TARGET where the CLI wants a
    MODULE:ATTR: after `serve` and `check`, and first after the `--` of `service install`
    (a `--` is added when there is none)."""
    args = list(args)
    if args and args[0] in TARGETED:
        return [args[0], target, *args[1:]]
    if args[:2] == ["service", "install"]:
        if "--" not in args:
            return [*args, "--", target]
        split = args.index("--") + 1
        return [*args[:split], target, *args[split:]]
    return args


def main(target: str) -> None:
    """Run the bundle's command line (or, when the SCM starts it, the service host)."""
    if sys.argv[1:2] == [HOST_COMMAND]:
        from graceful.windows import service_host

        sys.argv = [sys.argv[0], *sys.argv[2:]]  # the host reads NAME ... from argv[1:]
        service_host.main()
        return
    from graceful.cli.main import main as cli

    cli(args=argv_with_target(sys.argv[1:], target))
