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

from aiohttp.http_parser import RawRequestMessage

HEADERS_END = b"\r\n\r\n"
# More than aiohttp accepts (8190 per line); a block this large is not accounted.
MAX_HEADER_BYTES = 65536
_LEADING = b"\r\n"
_CRLF = b"\r\n"
_LF = b"\n"
_CR = b"\r"


class StreamAccount:
    """Counts a connection's bytes and frames its requests (see the module docstring)."""

    __slots__ = ("_body_left", "_head", "known")

    def __init__(self) -> None:
        self.known = True
        self._body_left = 0  # bytes of the current request's body still to come
        self._head = b""  # the bytes of a header block not yet complete

    def fed(self, data: bytes, parsed: list[object]) -> None:
        """`data` arrived and aiohttp parsed `parsed` from it (in order; after what it had
        kept of earlier reads): each header block found in `data` must be the next of them,
        and none may be left over."""
        at = 0
        size = len(data)
        messages = iter(parsed)
        while at < size:
            if self._body_left:
                taken = min(self._body_left, size - at)
                self._body_left -= taken
                at += taken
                continue
            if self._head:  # a block begun in an earlier read (at is 0: the first step)
                head = self._head + data
                end = head.find(HEADERS_END)
                block = head[:end]
                at = size - (len(head) - end - len(HEADERS_END))
            else:
                while at < size and data[at] in _LEADING:  # what llhttp skips, as it does
                    at += 1
                head = data
                end = data.find(HEADERS_END, at)
                block = data[at:end]
                if end >= 0:
                    at = end + len(HEADERS_END)
            if end < 0:  # the block goes on in the next read
                self._head = head if head is not data else data[at:]
                if len(self._head) > MAX_HEADER_BYTES:
                    self._give_up()
                break
            self._head = b""
            length = _body_length(block, next(messages, None))
            if length is None:
                self._give_up()
                return
            self._body_left = length
        if next(messages, None) is not None:  # parsed, but not from a block found here
            self._give_up()

    @property
    def at_request_end(self) -> bool:
        """Exactly known: every byte received belongs to requests aiohttp has parsed, the last
        body included (no byte of a next request read)."""
        return self.known and not self._body_left and not self._head

    def _give_up(self) -> None:
        self.known = False
        self._head = b""
        self._body_left = 0


def _body_length(block: bytes, message: object) -> int | None:
    """The length of the body behind `block`, a request's header block, when `message` is
    the request aiohttp parsed from it; None when it is not, or when that cannot be told
    exactly (a chunked body, an upgrade).

    Is it the same block? Its request line has the message's method and the length of its
    target and version (a target that is not ASCII is not accounted), and it has as many
    CRLFs as the message has header lines: a bare LF ending a line, or a folded line,
    would count otherwise. The block's end itself is exact: llhttp ends a block at its
    first empty line, and bare LFs are excluded."""
    if not isinstance(message, RawRequestMessage) or message.chunked or message.upgrade:
        return None
    if block.count(_CRLF) != len(message.raw_headers):
        return None
    method = message.method
    line_end = block.find(_CRLF)
    line = block if line_end < 0 else block[:line_end]
    if (len(line) != len(method) + len(message.path) + len(" HTTP/1.1 ")
            or not line.startswith(method.encode("ascii", "replace"))
            or _LF in line or _CR in line):
        return None
    length = message.headers.get("Content-Length")
    if length is None:
        return 0
    return int(length) if length.isascii() and length.isdigit() else None
