"""Liveness and readiness, answered by the runtime in front of the application.

They are answered before the app's middlewares and router see the request: an auth
middleware must not turn a probe into a 401, and a catch-all route (a single-page app's
fallback) must not make every path "taken". A path the app routes *exactly* is still
refused at start rather than silently shadowed. They say only the state ("ok", "ready",
"starting", "draining"): nothing about the app. `--no-health` turns them off.

Cost: one function call and one dict lookup per request (bench/protocol_cost.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from graceful.errors import ConfigError

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
_NO_STORE = {hdrs.CACHE_CONTROL: "no-store"}
_PROBE_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD})


class Health:
    def __init__(self, livez_path: str, readyz_path: str, *, is_ready: Callable[[], bool],
                 phase: Callable[[], str]) -> None:
        self.livez_path, self.readyz_path = livez_path, readyz_path
        self._is_ready, self._phase = is_ready, phase

    def refuse_taken_paths(self, app: web.Application) -> None:
        """A path the app routes exactly is a ConfigError, not shadowed."""
        for path in (self.livez_path, self.readyz_path):
            taken = _exact_route_for(app, path)
            if taken:
                raise ConfigError(
                    f"the application already routes {path} ({taken}); choose another path "
                    f"with --livez-path/--readyz-path, or turn them off with --no-health"
                )

    def in_front_of(self, handler: Handler) -> Handler:
        """`handler` (the app's), with the probes answered before it."""
        answers = {self.livez_path: self._livez, self.readyz_path: self._readyz}.get

        # A plain function, not a coroutine: the app's requests pay one call, not one more
        # coroutine (see protocol.py). The path as aiohttp's router reads it (`path_safe`,
        # cached on the URL, so the router does not compute it again); `request.path` would
        # decode it once more for every request.
        def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
            answer = answers(request.rel_url.path_safe)
            if answer is None or request.method not in _PROBE_METHODS:
                return handler(request)
            return answer()

        return handle

    async def _livez(self) -> web.Response:
        return web.Response(text="ok\n", headers=_NO_STORE)

    async def _readyz(self) -> web.Response:
        ready = self._is_ready()
        return web.Response(status=200 if ready else 503,
                            text=("ready" if ready else self._phase()) + "\n", headers=_NO_STORE)


def _exact_route_for(app: web.Application, path: str) -> str | None:
    for resource in app.router.resources():
        info = resource.get_info()
        if info.get("path") == path or info.get("prefix") == path:
            return resource.canonical
    return None
