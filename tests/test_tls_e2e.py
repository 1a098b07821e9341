"""TLS: --ssl-certfile/--ssl-keyfile/--ssl-keyfile-password/--ssl-ca-certs/--ssl-client-cert,
with certificates made at test time (trustme). The drain over TLS is the plain one."""

from __future__ import annotations

import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tests.test_bind_e2e import error_lines, run, start


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "cert.pem",
             "key": tmp_path / "key.pem", "other_key": tmp_path / "other.pem",
             "encrypted_key": tmp_path / "encrypted.pem", "junk": tmp_path / "junk.pem",
             "client": tmp_path / "client.pem"}
    ca.cert_pem.write_to_path(files["ca"])
    cert.cert_chain_pems[0].write_to_path(files["cert"])
    cert.private_key_pem.write_to_path(files["key"])
    ca.issue_cert("other").private_key_pem.write_to_path(files["other_key"])
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), None)
    files["encrypted_key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret")))
    files["junk"].write_text("not a certificate\n")
    client = ca.issue_cert("client@example.com")
    client.private_key_and_cert_chain_pem.write_to_path(files["client"])
    return {"authority": ca, **{k: str(v) for k, v in files.items()}}


def _client_context(pki: dict[str, Any], cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context()
    pki["authority"].configure_trust(context)
    if cert:
        context.load_cert_chain(pki["client"])
    return context


class TlsClient:
    """A blocking TLS connection that tells a close_notify from a bare TCP close."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1",
                                        suppress_ragged_eofs=False)
        self.buffer = b""

    def send(self, path: str) -> None:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, *lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        size = int(headers.get("content-length", "0"))
        while len(self.buffer) < size:
            self.buffer += self._recv()
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return int(status.split()[1]), headers, body

    def closed_with_close_notify(self) -> bool:
        """b'' is a TLS close_notify; SSLEOFError is a TCP close without one."""
        try:
            return self._recv() == b"" and not self.buffer
        except ssl.SSLEOFError:
            return False

    def _recv(self) -> bytes:
        return self.sock.recv(65536)

    def close(self) -> None:
        self.sock.close()


def _serve_tls(pki: dict[str, Any], *args: str):
    server = start("tests.apps:basic", "--bind", "127.0.0.1:0", "--ssl-certfile", pki["cert"],
                   *args)
    server.port = int(server.wait_for("server.started")["addresses"][0].rpartition(":")[2])
    return server


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_drain_over_tls(pki, loop):
    """1. HTTPS served; at SIGTERM a slow request in flight completes with Connection:
    close and a TLS close_notify; an idle keep-alive connection whose client never reads
    (a pooled one) gets close_notify too and does not hold the drain; exit 0 soon after the
    slow handler returns."""
    server = _serve_tls(pki, "--ssl-keyfile", pki["key"], "--loop", loop)
    try:
        context = _client_context(pki)
        idle, busy = TlsClient(server.port, context), TlsClient(server.port, context)
        idle.send("/fast")
        assert idle.response()[0] == 200
        busy.send("/traced?s=1")
        server.wait_for("app.handler_started", n=1)
        server.signal(signal.SIGTERM)
        status, headers, body = busy.response()
        answered = time.monotonic()
        assert (status, headers["connection"].lower(), body) == (200, "close", b"slept 1.0\n")
        assert busy.closed_with_close_notify()
        busy.close()  # as a client does once it has read the end
        assert server.wait(15) == 0
        assert time.monotonic() - answered < 0.5
        assert "drain.deadline" not in server.names()
        assert idle.closed_with_close_notify()  # read only now: it was sent at the close
    finally:
        server.kill()


def test_encrypted_key_with_its_password(pki):
    """2. An encrypted key and --ssl-keyfile-password (also from the environment)."""
    server = _serve_tls(pki, "--ssl-keyfile", pki["encrypted_key"],
                        "--ssl-keyfile-password", "s3cret")
    try:
        client = TlsClient(server.port, _client_context(pki))
        client.send("/fast")
        assert client.response()[0] == 200
        client.close()
        server.signal(signal.SIGTERM)
        assert server.wait(15) == 0
    finally:
        server.kill()


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_client_certificates(pki, mode):
    """3. --ssl-ca-certs with --ssl-client-cert: a client with a certificate signed by the
    CA is served; one without is refused in the handshake when it is required, served when
    it is optional."""
    server = _serve_tls(pki, "--ssl-keyfile", pki["key"], "--ssl-ca-certs", pki["ca"],
                        "--ssl-client-cert", mode)
    try:
        anonymous = TlsClient(server.port, _client_context(pki))
        if mode == "required":
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                anonymous.send("/fast")  # TLS 1.3: the refusal comes with the first read
                anonymous.response()
        else:
            anonymous.send("/fast")
            assert anonymous.response()[0] == 200
        anonymous.close()
        client = TlsClient(server.port, _client_context(pki, cert=True))
        client.send("/fast")
        assert client.response()[0] == 200
        client.close()
        server.signal(signal.SIGTERM)
        assert server.wait(15) == 0
    finally:
        server.kill()


@pytest.mark.parametrize(("args", "words"), [
    (["--ssl-certfile", "{tmp}/nowhere.pem"], ["nowhere.pem", "cannot read"]),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{other_key}"], ["other.pem", "match"]),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{encrypted_key}",
      "--ssl-keyfile-password", "wrong"], ["encrypted.pem", "password"]),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{encrypted_key}"],
     ["encrypted.pem", "--ssl-keyfile-password"]),
    (["--ssl-certfile", "{junk}", "--ssl-keyfile", "{key}"], ["junk.pem", "certificate"]),
    (["--ssl-certfile", "{cert}"], ["cert.pem", "--ssl-keyfile"]),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}", "--ssl-ca-certs", "{junk}"],
     ["junk.pem"]),
    (["--ssl-keyfile", "{key}"], ["--ssl-certfile"]),
    (["--ssl-certfile", "{cert}", "--ssl-keyfile", "{key}", "--ssl-client-cert", "required"],
     ["--ssl-ca-certs"]),
])
def test_bad_tls_files_exit_2_in_one_line(pki, tmp_path, args, words):
    """4. Missing file, key that does not match, wrong or missing password, not PEM, client
    certificates without CAs: exit 2 with one line naming the file, before the app starts."""
    values = {**pki, "tmp": str(tmp_path)}
    result = run("tests.apps:basic", "--bind", "127.0.0.1:0",
                 *[a.format(**values) for a in args])
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "s3cret" not in result.stderr and "wrong" not in result.stderr.replace(
        "wrong --ssl", "")
