"""Liveness and readiness, answered by the runtime on paths of the application's router.

They say only the state ("ok", "ready", "starting", "draining"): nothing about the app.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from graceful.errors import ConfigError


def install(app: web.Application, livez_path: str, readyz_path: str,
            is_ready: Callable[[], bool], phase: Callable[[], str]) -> None:
    """Add the two routes; a path the app already routes is a ConfigError, not shadowed."""
    for path in (livez_path, readyz_path):
        taken = _route_for(app, path)
        if taken:
            raise ConfigError(
                f"the application already routes {path} ({taken}); choose another path "
                f"with --livez-path/--readyz-path"
            )

    async def livez(request: web.Request) -> web.Response:
        return web.Response(text="ok\n", headers={"Cache-Control": "no-store"})

    async def readyz(request: web.Request) -> web.Response:
        ready = is_ready()
        return web.Response(status=200 if ready else 503, text=("ready" if ready else phase())
                            + "\n", headers={"Cache-Control": "no-store"})

    app.router.add_get(livez_path, livez, name="graceful-livez")
    app.router.add_get(readyz_path, readyz, name="graceful-readyz")


def _route_for(app: web.Application, path: str) -> str | None:
    for resource in app.router.resources():
        info = resource.get_info()
        if info.get("path") == path or info.get("prefix") == path:
            return resource.canonical
        formatter = info.get("formatter")
        if formatter and resource._match(path) is not None:  # a dynamic route catching it
            return resource.canonical
    return None
