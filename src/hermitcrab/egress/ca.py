"""A certificate authority per sandbox, for the endpoints whose TLS the proxy terminates.

Its certificate goes into the sandbox's trust store; its key never leaves the host. Leaf
certificates are made on first use for each host name and kept for the proxy's lifetime.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DAYS = 825


MAX_LEAVES = 256  # leaf certificates kept per sandbox, least recently used dropped


class SandboxCA:
    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.name = name
        self.cert_path = folder / "ca.pem"
        self.key_path = folder / "ca-key.pem"
        self.bundle_path = folder / "ca-bundle.pem"
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        if not (self.cert_path.exists() and self.key_path.exists()):
            self._create()
        self._write_bundle()

    def _create(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"HermitCrab sandbox CA ({self.name})")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(key, hashes.SHA256())
        )
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(_pem_key(key))
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _write_bundle(self) -> None:
        """The system's trusted roots plus ours: what the sandbox sees as its CA bundle."""
        system = SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.exists() else b""
        self.bundle_path.write_bytes(system + b"\n" + self.cert_path.read_bytes())

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context presenting a certificate for `host`, signed by this CA."""
        with self._lock:  # called from worker threads
            context = self._contexts.pop(host, None)
            if context is None:
                context = self._leaf_context(host)
                if len(self._contexts) >= MAX_LEAVES:  # a wildcard rule meets endless names
                    self._contexts.pop(next(iter(self._contexts)))
            self._contexts[host] = context  # most recently used last
            return context

    def issue(self, host: str, days: int = 30) -> tuple[bytes, bytes]:
        """A certificate for `host` (a name, or an address), signed by this CA, and its key:
        both PEM."""
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        try:
            alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            alt = x509.DNSName(host)
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)

    def _leaf_context(self, host: str) -> ssl.SSLContext:
        cert, key = self.issue(host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(dir=self.folder) as tmp:  # load_cert_chain wants files
            cert_file, key_file = Path(tmp) / "leaf.pem", Path(tmp) / "leaf-key.pem"
            cert_file.write_bytes(cert)
            key_file.write_bytes(key)
            context.load_cert_chain(cert_file, key_file)
        return context


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
