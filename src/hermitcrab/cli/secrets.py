"""`hermitcrab secrets set|list|rm`: credentials kept by the gateway, 0600, never in a sandbox."""

from __future__ import annotations

import sys
import time

from hermitcrab.cli.output import fail
from hermitcrab.config.paths import Paths
from hermitcrab.egress.secrets import MIN_SECRET_LENGTH, Secret, SecretStore


def _store() -> SecretStore:
    return SecretStore(Paths.from_env().secrets)


def set_secret(name: str, header: str, scheme: str) -> None:
    if sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"value for {name}: ")
    else:
        value = sys.stdin.read().strip()
    if len(value) < MIN_SECRET_LENGTH:
        fail(
            f"a secret must be at least {MIN_SECRET_LENGTH} characters (shorter ones cannot be screened for)"
        )
    _store().set(Secret(name=name, value=value, header=header, scheme=scheme))
    print(
        f"stored '{name}'; the proxy adds it as '{header}' on endpoints whose rule says credentials: {name}"
    )


def list_secrets() -> None:
    store = _store()
    names = store.names()
    if not names:
        print("No secrets. Add one with `hermitcrab secrets set NAME`.")
    for name in names:
        grant = store.grant(name)
        if grant is None:
            print(name)
            continue
        expires = (grant.tokens or {}).get("expires_at")
        left = f", token ends in {max(int(expires - time.time()), 0)} s (then refreshed)" if expires else ""
        print(f"{name}  (OAuth sign-in to {grant.resource}{left})")


def remove(name: str) -> None:
    if not _store().remove(name):
        fail(f"no secret named '{name}'")
    print(f"removed '{name}'")
