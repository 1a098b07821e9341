"""TLS: the server's SSLContext from --ssl-* options, with errors that name the file.

OpenSSL says "[SSL] PEM lib" for a missing key, a wrong password and a file that is not
PEM alike, so each file is checked on its own first and the error says which one is wrong.
An encrypted key without --ssl-keyfile-password is refused: OpenSSL would otherwise prompt
on the terminal, and a server started by a supervisor would hang there.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from graceful.errors import ConfigError

CLIENT_CERT = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
               "required": ssl.CERT_REQUIRED}


class _NoPassword(Exception):
    pass


def server_context(config: Any) -> ssl.SSLContext | None:
    """The SSLContext for `config` (None without --ssl-certfile); ConfigError otherwise."""
    if config.ssl_certfile is None:
        return None
    certfile = Path(config.ssl_certfile)
    keyfile = Path(config.ssl_keyfile) if config.ssl_keyfile else certfile
    cert_text = _read(certfile, "certificate")
    key_text = cert_text if keyfile == certfile else _read(keyfile, "key")
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise ConfigError(f"TLS certificate file {certfile} holds no PEM certificate")
    if "PRIVATE KEY-----" not in key_text:
        raise ConfigError(f"TLS key file {keyfile} holds no PEM private key"
                          + (" (give it with --ssl-keyfile)" if keyfile == certfile else ""))
    encrypted = "ENCRYPTED" in key_text
    password = config.ssl_keyfile_password
    if encrypted and not password:
        raise ConfigError(f"TLS key file {keyfile} is encrypted: give --ssl-keyfile-password")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile, password=password or _refuse_prompt)
    except _NoPassword:
        raise ConfigError(f"TLS key file {keyfile} is encrypted: give "
                          "--ssl-keyfile-password") from None
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"TLS key file {keyfile} does not match the certificate "
                              f"{certfile}") from None
        if encrypted:
            raise ConfigError(f"TLS key file {keyfile}: wrong --ssl-keyfile-password, or "
                              "not a key") from None
        raise ConfigError(f"TLS certificate {certfile} or key {keyfile} cannot be loaded: "
                          f"{err.reason or err}") from None
    if config.ssl_ca_certs is not None:
        cafile = Path(config.ssl_ca_certs)
        _read(cafile, "CA certificates")
        try:
            context.load_verify_locations(cafile=cafile)
        except ssl.SSLError as err:
            raise ConfigError(f"TLS CA certificates file {cafile} holds no PEM certificate "
                              f"({err.reason or err})") from None
    context.verify_mode = CLIENT_CERT[config.ssl_client_cert]
    return context


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text("ascii", errors="replace")
    except OSError as err:
        raise ConfigError(f"cannot read the TLS {what} file {path}: "
                          f"{err.strerror or err}") from None


def _refuse_prompt() -> bytes:
    raise _NoPassword
