"""How repeated stop requests escalate: the first drains, the second forces, the third
abandons; a repeat that comes too soon after the last one does not count."""

from __future__ import annotations

from graceful.bridge.stop import StopLevel, StopRequest
from graceful.logs import get_logger

log = get_logger()

# One Ctrl+C can reach us twice (the terminal signals the whole process group and a wrapper
# forwards it), and a script may send a burst: a repeat sooner than this is ignored.
REPEAT_IGNORED_S = 0.5


class Escalation:
    """The stop requests that counted, and the level they have reached."""

    def __init__(self) -> None:
        self.requests: list[StopRequest] = []

    @property
    def first(self) -> StopRequest:
        return self.requests[0]

    @property
    def forced(self) -> bool:
        return len(self.requests) > 1

    def accept(self, request: StopRequest, phase: str) -> StopLevel | None:
        """Count `request` and return the level it brings the stop to, or None (logged) for
        a repeat within REPEAT_IGNORED_S of the last request that counted."""
        if self.requests and request.at - self.requests[-1].at < REPEAT_IGNORED_S:
            log.info("stop.repeated", source=str(request.source), ignored=True)
            return None
        self.requests.append(request)
        level = StopLevel(min(len(self.requests), StopLevel.ABANDON))
        log.info("stop.requested", source=str(request.source), reason=request.reason,
                 mode=level.name.lower(), attempt=len(self.requests), phase=phase)
        return level
