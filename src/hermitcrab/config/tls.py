"""The gateway's own TLS, as its local clients see it: the certificate it serves is pinned
(it is the only one trusted, whoever signed it), and since they reach it on loopback, the
name in it need not match."""

from __future__ import annotations

import ssl
from pathlib import Path


def pinned(cert: str | Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(Path(cert).expanduser()))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a CA-issued leaf, trusted as itself
    context.check_hostname = False  # loopback: the pin is the proof, not the name
    return context
