"""Where a connection's requests end in its byte stream: exactly, or not at all.

aiohttp's C parser keeps the start of a next request that came in the same read as the end
of a body inside llhttp, and shows nothing of it. So whether a connection has read ahead
cannot be asked of aiohttp: it is counted here. A connection's stream starts at offset 0
and its requests are sequential; each request's header block is found here (llhttp skips
CR/LF before a request line, as this does) and checked against the request aiohttp parsed
from it (method, target, version, Content-Length); its end is the end of that block plus
its Content-Length. Whatever cannot be accounted exactly (a chunked body, an upgrade, a
header block that does not match aiohttp's, bare LF line ends, a block larger than
MAX_HEADER_BYTES) makes the account unknown for good: the caller then falls back to its
older, coarser rule.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Iterable

from aiohttp.http_parser import RawRequestMessage

HEADERS_END = b"\r\n\r\n"
# More than aiohttp accepts (8190 per line); a block this large is not accounted.
MAX_HEADER_BYTES = 65536
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")
_LEADING = b"\r\n"


@dataclasses.dataclass(frozen=True, slots=True)
class _Framed:
    """A request's header block as found in the stream."""

    request_line: bytes
    content_length: int


class StreamAccount:
    """Counts a connection's bytes and frames its requests (see the module docstring)."""

    __slots__ = ("_body_left", "_head", "_unmatched", "known", "received")

    def __init__(self) -> None:
        self.known = True
        self.received = 0
        self._body_left = 0  # bytes of the current request's body still to come
        self._head = b""  # the bytes of a header block not yet complete
        self._unmatched: collections.deque[_Framed] = collections.deque()

    def fed(self, data: bytes) -> None:
        """`data` arrived (before aiohttp parses it)."""
        self.received += len(data)
        if not self.known:
            return
        view = data
        while view:
            if self._body_left:
                taken = min(self._body_left, len(view))
                self._body_left -= taken
                view = view[taken:]
                continue
            head = self._head + view if self._head else view.lstrip(_LEADING)
            end = head.find(HEADERS_END)
            if end < 0:
                self._head = head
                if len(head) > MAX_HEADER_BYTES:
                    self._give_up()
                return
            block, view = head[:end], head[end + len(HEADERS_END):]
            self._head = b""
            framed = _framed(block)
            if framed is None:
                self._give_up()
                return
            self._unmatched.append(framed)
            self._body_left = framed.content_length

    def parsed(self, messages: Iterable[object]) -> None:
        """aiohttp parsed `messages` (in order) from what was fed: each must be the next
        framed here."""
        for message in messages:
            if not self.known:
                return
            if not self._unmatched or not _same(self._unmatched.popleft(), message):
                self._give_up()

    @property
    def at_request_end(self) -> bool:
        """Exactly known: every byte received belongs to requests aiohttp has parsed, the last
        body included (no byte of a next request read)."""
        return (self.known and not self._unmatched and not self._body_left
                and not self._head)

    def _give_up(self) -> None:
        self.known = False
        self._head = b""
        self._unmatched.clear()


def _framed(block: bytes) -> _Framed | None:
    """The request line and Content-Length of a header block; None when it is not one this
    accounts exactly (bare CR or LF, folded lines, chunked, an upgrade, a Content-Length
    that is not one plain number)."""
    lines = block.split(b"\r\n")
    if any(b"\r" in line or b"\n" in line for line in lines):
        return None
    length: int | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in b" \t":
            return None
        name = name.lower()
        if name in (b"transfer-encoding", b"upgrade"):
            return None
        if name == b"content-length":
            value = value.strip(b" \t")
            if length is not None or not _CONTENT_LENGTH.fullmatch(value):
                return None
            length = int(value)
    return _Framed(lines[0], length or 0)


def _same(framed: _Framed, message: object) -> bool:
    """`message` (aiohttp's) is the request framed as `framed`."""
    if not isinstance(message, RawRequestMessage) or message.chunked or message.upgrade:
        return False
    parts = framed.request_line.split(b" ")
    if len(parts) != 3:
        return False
    version = f"HTTP/{message.version.major}.{message.version.minor}".encode()
    if parts != [message.method.encode("latin-1"), message.path.encode("utf-8", "surrogateescape"),
                 version]:
        return False
    lengths = message.headers.getall("Content-Length", [])
    if len(lengths) > 1:
        return False
    return int(lengths[0]) == framed.content_length if lengths else framed.content_length == 0
