"""Credentials live here, in the gateway's home (0600), never in a sandbox. The egress
proxy adds them to requests for the endpoints a rule binds them to, and blocks any
request that carries one anywhere else."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from hermitcrab.errors import HermitCrabError

MIN_SECRET_LENGTH = 8  # shorter values would match innocent text


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


class SecretStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._cache: dict[str, Secret] | None = None
        self._stamp: tuple[int, int] | None = None

    def _load(self) -> dict[str, Secret]:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (info.st_mtime_ns, info.st_size)
        if self._cache is None or stamp != self._stamp:
            if info.st_mode & 0o077:
                raise SecretError(f"{self.path} is readable by others. fix: chmod 600 {self.path}")
            data = json.loads(self.path.read_text())
            self._cache = {name: Secret(name=name, **fields) for name, fields in data.items()}
            self._stamp = stamp
        return self._cache

    def get(self, name: str) -> Secret:
        secret = self._load().get(name)
        if secret is None:
            raise SecretError(f"no secret named '{name}'. fix: `hermitcrab secrets set {name}`")
        return secret

    def names(self) -> list[str]:
        return sorted(self._load())

    def values(self) -> dict[str, str]:
        """Secret values worth scanning for, by name."""
        return {n: s.value for n, s in self._load().items() if len(s.value) >= MIN_SECRET_LENGTH}

    def set(self, secret: Secret) -> None:
        data = {n: {k: v for k, v in asdict(s).items() if k != "name"} for n, s in self._load().items()}
        data[secret.name] = {k: v for k, v in asdict(secret).items() if k != "name"}
        self._write(data)

    def remove(self, name: str) -> bool:
        data = {n: {k: v for k, v in asdict(s).items() if k != "name"} for n, s in self._load().items()}
        found = data.pop(name, None) is not None
        self._write(data)
        return found

    def _write(self, data: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
        tmp.replace(self.path)
        self._cache = None


def find_secret(values: dict[str, str], *texts: bytes) -> str | None:
    """The name of the first secret whose value appears in any of `texts`, as it is or in
    the encodings a URL, a header or a body would carry it in."""
    import base64
    from urllib.parse import quote, quote_plus, unquote_to_bytes

    # Percent-decoded too, so that '%67hp_...' is seen as 'ghp_...'.
    haystacks = [*texts, *(unquote_to_bytes(t.replace(b"+", b" ")) for t in texts if b"%" in t)]
    for name, value in values.items():
        raw = value.encode()
        needles = {raw, quote(value, safe="").encode(), quote_plus(value).encode(), base64.b64encode(raw)}
        if any(needle in text for text in haystacks for needle in needles):
            return name
    return None
