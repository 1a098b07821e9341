"""What /metrics serves: graceful's own registry and, unless the user opts out
(--no-metrics-default-registry), prometheus_client's default one: the process, platform and
GC collectors and the metrics an app registers the usual way (`Counter("hits", ...)`, no
`registry=`). One endpoint, as users of prometheus_client expect.

The one place that decides it. A worker of graceful serve's supervisor answers for the
service: it serves what every worker wrote to the shared folder (PROMETHEUS_MULTIPROC_DIR),
merged by prometheus_client's MultiProcessCollector, as its documentation says to: counters
and histograms summed over the workers (those that have exited included), gauges by their
`multiprocess_mode`. The app's metrics (in that folder too) are served the same way; the
process, platform and GC collectors are not (each is one process's: prometheus_client's
multiprocess mode leaves them out). --no-metrics-default-registry keeps graceful's series.
"""

from __future__ import annotations

import dataclasses
import struct
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

READ_ATTEMPTS = 3


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


@dataclasses.dataclass(frozen=True)
class Shared:
    """A worker's view of the service's metrics."""

    folder: str  # PROMETHEUS_MULTIPROC_DIR
    refresh: Callable[[], None]  # writes this worker's live values, before a scrape reads
    own: Collection[str]  # graceful's metric families, all --no-metrics-default-registry keeps


class _Service:
    """Every worker's series, merged; this worker's live values written first."""

    def __init__(self, shared: Shared, default_registry: bool) -> None:
        self._shared = shared
        self._merged = MultiProcessCollector(None, shared.folder)
        self._only = None if default_registry else frozenset(shared.own)

    def collect(self) -> Iterator[Metric]:
        self._shared.refresh()
        for metric in self._read():
            if self._only is None or metric.name in self._only:
                yield metric

    def _read(self) -> list[Metric]:
        """The folder's files merged, under the fold's shared lock (metrics_folder.py). A
        worker that is starting creates its files empty, then sizes them: one read in that
        moment fails (struct.error); the next one, a moment later, does not."""
        from graceful.supervisor.metrics_folder import folder_lock

        for attempt in range(READ_ATTEMPTS):
            try:
                with folder_lock(self._shared.folder, exclusive=False):
                    return list(self._merged.collect())
            except (struct.error, ValueError):
                if attempt == READ_ATTEMPTS - 1:
                    raise
                time.sleep(0.01)
        return []


def to_serve(own: CollectorRegistry, *, default_registry: bool,
             shared: Shared | None = None) -> Readable:
    """The registry a scrape reads: `own`, then the default registry if `default_registry`;
    a worker's (`shared`): the service's, from the folder every worker writes to."""
    if shared is not None:
        service = CollectorRegistry()
        service.register(_Service(shared, default_registry))
        return service
    return Joined(own, REGISTRY) if default_registry else own
