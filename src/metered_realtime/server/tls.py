"""The server's TLS context, built from PEM files at start-up with errors an operator can act on."""

from __future__ import annotations

import ssl

__all__ = ["TlsSetupError", "server_tls_context"]


class TlsSetupError(ValueError):
    """The certificate or key cannot be used; the message names the file and the cause."""


def server_tls_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """A server context for ``cert_path`` (the chain, leaf first) and ``key_path``.

    Each file is read on its own first, so an unreadable or non-PEM file is named, and a key
    that does not belong to the certificate is told apart from both. The key's content never
    reaches a message (the ssl module's errors carry only library codes).
    """
    for what, path in (("certificate", cert_path), ("key", key_path)):
        try:
            with open(path, "rb") as fh:
                pem = fh.read()
        except OSError as exc:
            raise TlsSetupError(f"cannot read the TLS {what} {path}: {exc.strerror}") from None
        marker = b"-----BEGIN CERTIFICATE-----" if what == "certificate" else b"PRIVATE KEY-----"
        if marker not in pem:
            raise TlsSetupError(f"the TLS {what} {path} is not a PEM {what}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_passphrase)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise TlsSetupError(
                f"the TLS key {key_path} does not belong to the certificate {cert_path}"
            ) from None
        raise TlsSetupError(
            f"cannot load the TLS certificate {cert_path} with the key {key_path}: "
            f"{exc.reason or exc}"
        ) from None
    return context


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang a service.
    raise TlsSetupError("the TLS key is encrypted: give the server an unencrypted key file")
