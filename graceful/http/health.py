"""Liveness and readiness: two exact paths of the app's router, that its middlewares never see.

`install` adds them to the app's router before it is frozen, as resources of their own: the
router looks an exact path up first (a dict keyed by path), so a catch-all route (a
single-page app's fallback) does not take them, and their match skips the app's middlewares
(it ignores `add_app`, which is how aiohttp learns whose middlewares to run), so an auth
middleware does not turn a probe into a 401. Only a sub-application matched by domain
(`add_domain`) is asked before them, for its own Host. A path the app routes *exactly* is
refused at start rather than silently shadowed; another method than GET and HEAD is the
app's, as if the probes were not there. They say only the state ("ok", "ready", "starting",
"draining", "degraded"): nothing about the app. `--no-health` turns them off.

Cost for the app's requests: none (the router's lookup of an exact path is one dict lookup
either way; bench/protocol_cost.py measures it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from graceful.errors import ConfigError

_NO_STORE = {hdrs.CACHE_CONTROL: "no-store"}
_PROBE_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})


class _ProbeMatch(web.UrlMappingMatchInfo):
    """A probe's match: no app is added to it, so no app's middlewares (nor its
    on_response_prepare) run for it."""

    def add_app(self, app: web.Application) -> None:
        pass


class _Probe(web.PlainResource):
    def __init__(self, path: str, answer: Callable[[], Awaitable[web.Response]]) -> None:
        super().__init__(path)

        async def probe(request: web.BaseRequest) -> web.StreamResponse:
            return await answer()

        self.probe_route = self.add_route(hdrs.METH_GET, probe)

    async def resolve(self, request: web.Request) -> Any:
        if request.method in _PROBE_METHODS and self.raw_match(request.rel_url.path_safe):
            return _ProbeMatch({}, self.probe_route), set(_PROBE_METHODS)
        return None, set()  # the app's router goes on as if the probe were not there


class Health:
    def __init__(self, livez_path: str, readyz_path: str, *, is_ready: Callable[[], bool],
                 phase: Callable[[], str], degraded: Callable[[], bool] = lambda: False,
                 degraded_ready: bool = True) -> None:
        self.livez_path, self.readyz_path = livez_path, readyz_path
        self._is_ready, self._phase = is_ready, phase
        # an optional startup check failing (graceful/lifecycle/checks.py)
        self._degraded, self._degraded_ready = degraded, degraded_ready

    def refuse_taken_paths(self, app: web.Application) -> None:
        """A path the app routes exactly is a ConfigError, not shadowed."""
        for path in (self.livez_path, self.readyz_path):
            taken = _exact_route_for(app, path)
            if taken:
                raise ConfigError(
                    f"the application already routes {path} ({taken}); choose another path "
                    f"with --livez-path/--readyz-path, or turn them off with --no-health"
                )

    def install(self, app: web.Application) -> None:
        """Add the probes to `app`'s router (before the runner freezes it)."""
        self.refuse_taken_paths(app)
        for path, answer in ((self.livez_path, self._livez), (self.readyz_path, self._readyz)):
            app.router.register_resource(_Probe(path, answer))

    async def _livez(self) -> web.Response:
        return web.Response(text="ok\n", headers=_NO_STORE)

    async def _readyz(self) -> web.Response:
        ready = self._is_ready()
        if ready and self._degraded():
            return web.Response(status=200 if self._degraded_ready else 503,
                                text="degraded\n", headers=_NO_STORE)
        return web.Response(status=200 if ready else 503,
                            text=("ready" if ready else self._phase()) + "\n", headers=_NO_STORE)


def _exact_route_for(app: web.Application, path: str) -> str | None:
    for resource in app.router.resources():
        info = resource.get_info()
        if info.get("path") == path or info.get("prefix") == path:
            return resource.canonical
    return None
