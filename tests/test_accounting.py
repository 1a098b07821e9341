"""accounting.py frames a connection's requests exactly, checked against aiohttp's parser.

1. Requests with and without a Content-Length body, split anywhere across reads, after
   CR/LF that llhttp skips: at a request's end once its body is all in, not before.
2. Bytes of a next request read (the start of its request line, its headers, whole but
   for its blank line) are never "at a request's end".
3. What it cannot account exactly makes it unknown for good: a chunked body, an upgrade,
   bare LF line ends, two Content-Lengths, a header block larger than the bound, and a
   request aiohttp parsed differently (or that it rejected).
"""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from aiohttp.http_parser import HttpRequestParser

from graceful.http.accounting import MAX_HEADER_BYTES, StreamAccount

POST = b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Stream:
    """A connection's bytes fed to the account and to aiohttp's own parser, as
    DrainingRequestHandler.data_received does."""

    def __init__(self) -> None:
        loop = asyncio.new_event_loop()
        self.parser = HttpRequestParser(mock.Mock(), loop, 2**16, max_line_size=8190,
                                        max_field_size=8190)
        self.account = StreamAccount()
        loop.close()

    def feed(self, *reads: bytes) -> StreamAccount:
        for data in reads:
            try:
                messages, _upgraded, _tail = self.parser.feed_data(data)
            except Exception:  # aiohttp answers 400: a message that is not a request
                messages = [(object(), None)]
            self.account.fed(data, [message for message, _payload in messages])
        return self.account


def _cuts(data: bytes) -> list[tuple[bytes, ...]]:
    return [(data[:at], data[at:]) for at in range(1, len(data))]


@pytest.mark.parametrize("reads", [(POST,), (GET + POST,), (b"\r\n" + POST + GET,),
                                   (POST, b"\r\n"), (GET * 50 + POST * 50,),
                                   (POST[:10], POST[10:40], POST[40:] + GET),
                                   *_cuts(GET + POST)])
def test_at_a_request_end_once_its_body_is_in(reads):
    """1. (CR/LF between requests, which llhttp skips, is nothing: a new worker's parser
    skips it the same, so it can be left behind.)"""
    assert Stream().feed(*reads).at_request_end


@pytest.mark.parametrize("reads", [(POST[:-1],), (POST + b"G",), (POST + GET[:-2],),
                                   (POST, b"\r\nG"), (POST[:-2], b"lo" + GET[:5])])
def test_never_at_a_request_end_with_a_next_request_read(reads):
    """1, 2."""
    account = Stream().feed(*reads)
    assert account.known and not account.at_request_end


@pytest.mark.parametrize("request_bytes", [
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"POST / HTTP/1.1\nHost: x\nContent-Length: 5\n\nhello" + GET,
    b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    b"GET / HTTP/1.1\r\nX: " + b"y" * MAX_HEADER_BYTES,
    b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
    b"BREW / HTTP/1.1\r\n\r\n",
])
def test_what_it_cannot_account_makes_it_unknown_for_good(request_bytes):
    """3."""
    account = Stream().feed(request_bytes)
    assert not account.known
    assert not Stream().feed(request_bytes, GET).at_request_end
