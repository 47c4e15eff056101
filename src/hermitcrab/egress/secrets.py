"""Credentials live here, in the gateway's home (0600), never in a sandbox. The egress
proxy adds them to requests for the endpoints a rule binds them to, and blocks any
request that carries one anywhere else."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hermitcrab.errors import HermitCrabError

MIN_SECRET_LENGTH = 8  # shorter values would match innocent text
OAUTH = "oauth"  # the kind of an entry that is an OAuth grant, not a secret


class SecretError(HermitCrabError):
    """A secret is missing or the store cannot be read."""


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    header: str = "Authorization"
    scheme: str = "Bearer"  # the header's value is "<scheme> <value>", or the value alone

    def header_value(self) -> str:
        return f"{self.scheme} {self.value}" if self.scheme else self.value


@dataclass(frozen=True)
class OAuthGrant:
    """What an OAuth authorization server granted HermitCrab for one MCP server: tokens and
    the client registered there. Kept beside the secrets, used by the gateway's own MCP
    client, which adds the token itself. No sandbox ever holds one, and no rule injects one,
    so the proxy does not screen for them: it would refuse the gateway's own request."""

    name: str
    resource: str  # the MCP server's URL the tokens are for
    tokens: dict[str, Any] | None = None  # the token response, with `expires_at` (epoch seconds)
    client: dict[str, Any] | None = None  # the client registration

    @property
    def signed_in(self) -> bool:
        return bool(self.tokens and self.tokens.get("access_token"))


def grant_record(store: SecretStore, name: str, resource: str) -> tuple[Any, Any]:
    """`load` and `save` of a grant's {"tokens", "client"} record, for an OAuth client's
    token storage (tools/mcp/oauth.py's StoredTokens)."""

    def load() -> dict[str, Any] | None:
        grant = store.grant(name)
        return {"tokens": grant.tokens, "client": grant.client} if grant is not None else None

    def save(record: dict[str, Any]) -> None:
        store.set_grant(OAuthGrant(name, resource, record.get("tokens"), record.get("client")))

    return load, save


class SecretStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, dict[str, Any]] | None = None
        self._stamp: tuple[int, int] | None = None

    def _entries(self) -> dict[str, dict[str, Any]]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (info.st_mtime_ns, info.st_size)
        if self._cache is None or stamp != self._stamp:
            if info.st_mode & 0o077:
                raise SecretError(f"{self.path} is readable by others. fix: chmod 600 {self.path}")
            self._cache = json.loads(self.path.read_text())
            self._stamp = stamp
        return self._cache

    def _load(self) -> dict[str, Secret]:
        return {
            name: Secret(name=name, **fields)
            for name, fields in self._entries().items()
            if fields.get("kind") != OAUTH
        }

    def get(self, name: str) -> Secret:
        secret = self._load().get(name)
        if secret is None:
            raise SecretError(f"no secret named '{name}'. fix: `hermitcrab secrets set {name}`")
        return secret

    def names(self) -> list[str]:
        """Secrets and OAuth grants."""
        return sorted(self._entries())

    def values(self) -> dict[str, str]:
        """Secret values worth scanning for, by name."""
        return {n: s.value for n, s in self._load().items() if len(s.value) >= MIN_SECRET_LENGTH}

    def set(self, secret: Secret) -> None:
        data = dict(self._entries())
        data[secret.name] = {k: v for k, v in asdict(secret).items() if k != "name"}
        self._write(data)

    def grant(self, name: str) -> OAuthGrant | None:
        fields = self._entries().get(name)
        if fields is None or fields.get("kind") != OAUTH:
            return None
        return OAuthGrant(name, fields.get("resource", ""), fields.get("tokens"), fields.get("client"))

    def set_grant(self, grant: OAuthGrant) -> None:
        data = dict(self._entries())
        data[grant.name] = {"kind": OAUTH, "resource": grant.resource, "tokens": grant.tokens,
                            "client": grant.client}  # fmt: skip
        self._write(data)

    def remove(self, name: str) -> bool:
        data = dict(self._entries())
        found = data.pop(name, None) is not None
        self._write(data)
        return found

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
        tmp.replace(self.path)
        self._cache = None


# A gzip'd body is screened unpacked, up to this much (a small bomb must not grow huge).
MAX_UNPACKED_BYTES = 32 * 1024 * 1024


def find_secret(values: dict[str, str], *texts: bytes) -> str | None:
    """The name of the first secret whose value appears in any of `texts`, as it is or in
    the encodings a URL, a header or a body would carry it in: percent-encoded, base64 (at
    any of the three alignments a prefix gives it), hex, reversed, JSON \\u escapes, gzip'd,
    in any letter case. What it cannot see: a secret cut into pieces sent apart, encrypted,
    or encoded some other way; the README says so."""
    haystacks = _haystacks(texts)
    for name, value in values.items():
        if value and any(needle in text for text in haystacks for needle in _needles(value)):
            return name
    return None


def _haystacks(texts: tuple[bytes, ...]) -> list[bytes]:
    import json
    from urllib.parse import unquote_to_bytes

    out = list(texts)
    out += [_gunzip(t[i:]) for t in texts for i in _gzip_starts(t)]  # a body, or a multipart's part
    out += [unquote_to_bytes(t.replace(b"+", b" ")) for t in out if b"%" in t]  # '%67hp_...' is 'ghp_...'
    for text in list(out):
        if b"\\u" in text:  # JSON escapes: "\u0067hp_..."
            try:
                out.append(json.loads(b'"' + text.replace(b'"', b'\\"') + b'"').encode("utf-8", "replace"))
            except (ValueError, UnicodeDecodeError):
                pass
    return out + [t.lower() for t in out]  # hex and base64 aside, case may not matter to the reader


def _needles(value: str) -> set[bytes]:
    import base64
    from urllib.parse import quote, quote_plus

    raw = value.encode()
    needles = {raw, raw.lower(), raw[::-1], raw[::-1].lower(), quote(value, safe="").encode(),
               quote_plus(value).encode(), raw.hex().encode(), raw.hex().upper().encode()}  # fmt: skip
    for shift in range(3):  # base64 of the secret after 0, 1 or 2 bytes: its stable middle
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = (shift * 4 + 2) // 3 + (1 if shift else 0)
        middle = encoded[start : len(encoded) - 4]
        if len(middle) >= 8:
            needles.add(middle)
        needles.add(base64.urlsafe_b64encode(b"\0" * shift + raw)[start : len(encoded) - 4] or encoded)
    needles.add(base64.b64encode(raw))
    return {n for n in needles if len(n) >= 6}


def _gzip_starts(data: bytes, most: int = 8) -> list[int]:
    starts, at = [], data.find(b"\x1f\x8b\x08")
    while at >= 0 and len(starts) < most:
        starts.append(at)
        at = data.find(b"\x1f\x8b\x08", at + 1)
    return starts


def _gunzip(data: bytes) -> bytes:
    import zlib

    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, MAX_UNPACKED_BYTES)
    except zlib.error:
        return b""
