"""`hermitcrab store migrate --to postgresql://...`: the embedded store copied whole, ids and
all, the counts checked; the copy works as a store (the audit chain verifies, new ids go on
after the copied ones); a database that already holds rows is refused."""

from __future__ import annotations

import json
from pathlib import Path

from hermitcrab.config.paths import Paths
from hermitcrab.store import AuditEntry
from hermitcrab.store.memory_index import Chunk
from hermitcrab.store.sessions import MESSAGE, REPLY
from hermitcrab.store.store import Store
from tests.cli.conftest import hc
from tests.store.postgres import Postgres


def test_the_embedded_store_is_copied_to_postgresql(home: Paths, postgres: Postgres) -> None:
    store = Store(home.state_db)
    store.sessions.ensure_session("main", "main")
    asked = store.sessions.append("main", MESSAGE, {"text": "hi"})
    store.sessions.append("main", REPLY, {"text": "hello"}, reply_to=asked.id)
    store.jobs.add("main", "main", "Check the backups", every_s=3600.0, created_by="cli")
    store.memory.replace("main", "MEMORY.md", (1, 2), [Chunk(1, "", "The backup code is 7741.")])
    for i in range(3):
        store.audit.record(AuditEntry(actor="cli", action="exec", outcome="ok", argv=["echo", str(i)]))
    store.close()

    url = postgres.database()
    done = hc(home, "store", "migrate", "--to", url, "--json")
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)["counts"]
    assert (counts["sessions"], counts["events"], counts["jobs"], counts["audit"]) == (1, 2, 1, 3)
    assert counts["memory_fts"] == 1

    copy = Store(url)
    try:
        events = copy.sessions.events("main")
        assert [e.data["text"] for e in events] == ["hi", "hello"] and events[1].reply_to == events[0].id
        assert copy.audit.verify().ok  # the chain came over intact
        later = copy.sessions.append("main", MESSAGE, {"text": "again"})
        assert later.id == events[-1].id + 1  # ids go on after the copied ones
        assert [h.line for h in copy.memory.search("main", '"backup"', 5)] == [1]
    finally:
        copy.close()

    again = hc(home, "store", "migrate", "--to", url)
    assert again.returncode != 0 and "already holds rows" in again.stderr
    missing = hc(home, "store", "migrate", "--to", postgres.database(), "--password-secret", "pg")
    assert missing.returncode != 0 and "hermitcrab secrets set pg" in missing.stderr
    wrong = hc(home, "store", "migrate", "--to", "mysql://x")
    assert wrong.returncode != 0 and "not a PostgreSQL URL" in wrong.stderr


def test_the_gateway_runs_on_postgresql(home: Paths, postgres: Postgres) -> None:
    """`store.url` in the config: the daemon keeps its sessions there, across a restart, and
    the CLI reads the same store (memory, audit); no SQLite file is made."""
    from hermitcrab.cli.client import GatewayClient
    from tests.conftest import free_port, wait_for

    url = postgres.database()
    home.config.write_text(home.config.read_text() + f"store:\n  url: {url}\n")
    assert hc(home, "up").returncode == 0
    try:
        client = GatewayClient(home)
        sent = client.post_message("main", "Bonjour?", None)

        def replied() -> list:
            return [
                e
                for e in client.events("main")
                if e["kind"] == "reply" and e["reply_to"] == sent["message_id"]
            ]

        wait_for(replied, what="the reply, through PostgreSQL")
        assert hc(home, "down").returncode == 0
        assert hc(home, "up").returncode == 0
        kinds = [e["kind"] for e in GatewayClient(home).events("main")]
        assert kinds[0] == "message" and "reply" in kinds  # kept across the restart
        assert hc(home, "audit", "verify").returncode == 0
    finally:
        hc(home, "down")
    assert not home.state_db.exists()
    good = home.config.read_text()
    home.config.write_text(good.replace(url, f"postgresql://hermitcrab@127.0.0.1:{free_port()}/nowhere"))
    down = hc(home, "up")  # nothing listens there
    assert down.returncode != 0 and "cannot reach PostgreSQL" in down.stderr
    home.config.write_text(good.replace(url, url.replace("hermitcrab@", "hermitcrab:pw@")))
    refused = hc(home, "up")
    assert refused.returncode != 0 and "store.password_secret" in refused.stderr


def test_two_gateways_on_one_database_share_the_live_feed(
    home: Paths, postgres: Postgres, tmp_path: Path
) -> None:
    """An event committed by one process reaches the live feed of another on the same
    database (LISTEN/NOTIFY), once and in order."""
    from hermitcrab.cli.client import GatewayClient
    from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for

    url = postgres.database()
    other = Paths(tmp_path / "other")
    assert hc(other, "onboard", "--yes").returncode == 0
    for paths in (home, other):
        config = SCRIPTED_CONFIG.format(port=free_port(), replies='["Bonjour!"]') + f"store:\n  url: {url}\n"
        paths.config.write_text(config)
        assert hc(paths, "up").returncode == 0
    try:
        with GatewayClient(other).websocket("main") as watcher:
            GatewayClient(home).post_message("main", "Bonjour?", None)  # the turn runs in `home`
            seen: list[dict] = []

            def replied() -> bool:
                seen.append(json.loads(watcher.recv(timeout=10)))
                return seen[-1]["kind"] == "reply"

            wait_for(replied, what="the other gateway's feed to carry the reply")
        committed = [e for e in seen if isinstance(e.get("id"), int)]
        assert committed[0]["kind"] == "message" and committed[-1]["data"]["text"] == "Bonjour!"
        ids = [e["id"] for e in committed]
        assert ids == sorted(set(ids))  # once each, in order
    finally:
        hc(home, "down")
        hc(other, "down")
