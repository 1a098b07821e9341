"""What /metrics serves: graceful's own registry and, unless the user opts out
(--no-metrics-default-registry), prometheus_client's default one: the process, platform and
GC collectors and the metrics an app registers the usual way (`Counter("hits", ...)`, no
`registry=`). One endpoint, as users of prometheus_client expect.

The one place that decides it: a multiprocess mode (workers behind a supervisor,
PROMETHEUS_MULTIPROC_DIR) would build what it serves here, from a MultiProcessCollector.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric


class Readable(Protocol):
    """What prometheus_client's exposition reads from a registry."""

    def collect(self) -> Iterable[Metric]: ...
    def restricted_registry(self, names: Iterable[str]) -> Readable: ...


class Joined:
    """Registries read as one, in order. Not one registry that the others are registered
    in: the `name[]` filter of a scrape goes to each (a registry sees only the names of
    what it describes), and the app's registry is left to refuse its duplicate names, as
    without graceful."""

    def __init__(self, *registries: Readable) -> None:
        self._registries = registries

    def collect(self) -> Iterator[Metric]:
        for registry in self._registries:
            yield from registry.collect()

    def restricted_registry(self, names: Iterable[str]) -> Joined:
        names = list(names)
        return Joined(*(r.restricted_registry(names) for r in self._registries))


def to_serve(own: CollectorRegistry, *, default_registry: bool) -> Readable:
    """The registry a scrape reads: `own`, then the default registry if `default_registry`."""
    return Joined(own, REGISTRY) if default_registry else own
