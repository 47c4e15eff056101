"""`hermitcrab store migrate --to postgresql://...`: the embedded store, copied to PostgreSQL."""

from __future__ import annotations

from hermitcrab.cli.agent_files import _stopped
from hermitcrab.cli.output import fail, print_json
from hermitcrab.config.paths import Paths
from hermitcrab.errors import HermitCrabError


def migrate(url: str, password_secret: str | None, json_output: bool) -> None:
    from hermitcrab.gateway.service import postgres_url
    from hermitcrab.store.copy import copy_to_postgres
    from hermitcrab.store.store import is_url

    paths = Paths.from_env()
    if not is_url(url):
        fail(f"{url!r} is not a PostgreSQL URL. fix: postgresql://USER@HOST:PORT/DATABASE")
    _stopped(paths, "copying the store")
    try:
        copied = copy_to_postgres(paths.state_db, postgres_url(paths, url, password_secret))
    except (HermitCrabError, OSError) as exc:
        fail(str(exc))
    if json_output:
        print_json({"to": url, "counts": copied.counts})
        return
    shown = ", ".join(f"{n} {t}" for t, n in copied.counts.items() if n)
    print(f"copied {paths.state_db} to {url}; every table's count matches: {shown or 'no rows'}")
