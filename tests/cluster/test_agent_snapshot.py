"""An agent carried between two homes as one file (`hermitcrab agent export|import`), with
real daemons on both sides: its sessions, a job, its memory and its workspace (a file the
agent wrote, its taint mark kept) arrive whole and the conversation goes on; a damaged or
tampered file, a home that already holds the agent, or a running gateway is refused with
nothing changed."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hermitcrab.cli.client import GatewayClient
from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc
from tests.conftest import SCRIPTED_CONFIG, free_port, wait_for

CONFIG = SCRIPTED_CONFIG
WRITES = json.dumps(
    [{"calls": [{"name": "write_file", "arguments": {"path": "notes/plan.md", "content": "Ship on Friday"}}]},
     "Written.", "Noted."]
)  # fmt: skip


def turn(paths: Paths, text: str) -> dict:
    client = GatewayClient(paths)
    sent = client.post_message("main", text, None)

    def answered() -> dict | None:
        done = [
            e for e in client.events("main") if e["reply_to"] == sent["message_id"] and e["kind"] == "reply"
        ]
        return done[0] if done else None

    return wait_for(answered, what=f"the reply to {text!r}")


@pytest.fixture
def other(tmp_path: Path) -> Iterator[Paths]:
    """A second home, as on another machine."""
    paths = Paths(tmp_path / "other")
    assert hc(paths, "onboard", "--yes").returncode == 0
    paths.config.write_text(CONFIG.format(port=free_port(), replies='["From the new machine."]'))
    yield paths
    hc(paths, "down")


@pytest.fixture
def snapshot(home: Paths, tmp_path: Path) -> Path:
    home.config.write_text(CONFIG.format(port=free_port(), replies=WRITES))
    assert hc(home, "up").returncode == 0
    try:
        turn(home, "Write the plan down.")
        assert hc(home, "cron", "add", "Check the backups", "--every", "6h").returncode == 0
        with home.workspace.joinpath("MEMORY.md").open("a") as memory:
            memory.write("\n- The backup code is 7741.\n")
        assert "7741" in hc(home, "memory", "search", "backup code").stdout
        refused = hc(home, "agent", "export", str(tmp_path / "refused.tar.gz"))
        assert refused.returncode != 0 and "hermitcrab down" in refused.stderr
    finally:
        assert hc(home, "down").returncode == 0
    file = tmp_path / "main.tar.gz"
    exported = hc(home, "agent", "export", str(file), "--json")
    assert exported.returncode == 0, exported.stderr
    report = json.loads(exported.stdout)
    assert report["agent"] == "main" and report["counts"]["sessions"] == 1 and report["counts"]["jobs"] == 1
    assert report["counts"]["events"] >= 6 and report["counts"]["memory_files"] >= 1
    return file


def test_an_agent_moves_to_another_home_and_goes_on(home: Paths, other: Paths, snapshot: Path) -> None:
    source = sqlite3.connect(home.state_db)  # the source's log, the daemon stopped
    kinds = [r[0] for r in source.execute("SELECT kind FROM events ORDER BY id")]
    source.close()

    restored = hc(other, "agent", "import", str(snapshot), "--json")
    assert restored.returncode == 0, restored.stderr
    report = json.loads(restored.stdout)
    assert report["counts"]["events"] == len(kinds) and report["config_added"] is False
    assert (other.workspace / "notes/plan.md").read_text() == "Ship on Friday"
    marks = (
        sqlite3.connect(other.state_db)
        .execute("SELECT tainted, mtime_ns FROM file_marks WHERE agent = 'main' AND path = 'notes/plan.md'")
        .fetchall()
    )
    # The mark follows the copy, and says tainted: a snapshot's claims are not taken on trust.
    assert marks == [(1, (other.workspace / "notes/plan.md").stat().st_mtime_ns)]

    assert hc(other, "up").returncode == 0
    events = GatewayClient(other).events("main")
    assert [e["kind"] for e in events] == kinds  # the same log, in order
    call = next(e for e in events if e["kind"] == "tool.call")
    result = next(e for e in events if e["kind"] == "tool.result")
    assert result["reply_to"] == events[0]["id"] and call["reply_to"] == events[0]["id"]
    jobs = json.loads(hc(other, "cron", "list", "--json").stdout)["jobs"]
    assert [j["text"] for j in jobs] == ["Check the backups"]
    assert "7741" in hc(other, "memory", "search", "backup code").stdout
    assert turn(other, "Still there?")["data"]["text"] == "From the new machine."

    again = hc(other, "agent", "import", str(snapshot))  # the same agent twice: refused
    assert again.returncode != 0 and "hermitcrab down" in again.stderr
    hc(other, "down")
    count = sqlite3.connect(other.state_db).execute("SELECT count(*) FROM events").fetchone()[0]
    again = hc(other, "agent", "import", str(snapshot))
    assert again.returncode != 0 and "already holds sessions main" in again.stderr
    assert sqlite3.connect(other.state_db).execute("SELECT count(*) FROM events").fetchone()[0] == count


def _rewrite(source: Path, target: Path, change: str) -> None:
    with tarfile.open(source, "r:gz") as old, tarfile.open(target, "w:gz") as new:
        for member in old.getmembers():
            data = old.extractfile(member).read() if member.isfile() else None
            if change == "flip" and member.name == "workspace/notes/plan.md":
                data = b"Ship on Monday"
                member.size = len(data)
            new.addfile(member, io.BytesIO(data) if data is not None else None)
        if change == "link":
            link = tarfile.TarInfo("workspace/escape")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            new.addfile(link)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ("flip", "does not match its manifest"),
        ("link", "is not a plain file"),
        ("cut", "not an agent snapshot"),
    ],
)
def test_a_damaged_or_tampered_snapshot_changes_nothing(
    other: Paths, snapshot: Path, tmp_path: Path, change: str, said: str
) -> None:
    bad = tmp_path / "bad.tar.gz"
    if change == "cut":
        bad.write_bytes(snapshot.read_bytes()[:200])
    else:
        _rewrite(snapshot, bad, change)
    config = other.config.read_text()
    refused = hc(other, "agent", "import", str(bad))
    assert refused.returncode != 0 and said in refused.stderr, refused.stderr
    assert not (other.workspace / "notes").exists() and other.config.read_text() == config
    assert not other.state_db.exists() or sqlite3.connect(other.state_db).execute(
        "SELECT count(*) FROM sessions"
    ).fetchone() == (0,)


def test_an_agent_this_home_lacks_brings_its_config(home: Paths, other: Paths, tmp_path: Path) -> None:
    scribe = tmp_path / "scribe-ws"
    scribe.mkdir()
    (scribe / "draft.md").write_text("A draft")
    config = CONFIG.format(port=free_port(), replies='["ok"]').replace(
        "agents:\n", "  careful:\n    provider: scripted\n    replies: ['Scribe here.']\nagents:\n"
    )
    home.config.write_text(config + f"  scribe:\n    model: careful\n    workspace: {scribe}\n")
    file = tmp_path / "scribe.tar.gz"
    assert hc(home, "agent", "export", str(file), "--agent", "scribe").returncode == 0
    done = hc(other, "agent", "import", str(file), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["config_added"] is True
    assert (other.home / "workspace-scribe" / "draft.md").read_text() == "A draft"
    assert hc(other, "up").returncode == 0  # the config, with the agent and its model added, loads
    client = GatewayClient(other)
    sent = client.post_message("notes", "Hello?", "scribe")
    wait_for(
        lambda: any(
            e["kind"] == "reply" and e["data"]["text"] == "Scribe here." for e in client.events("notes")
        ),
        what="the scribe's reply, on its own model",
    )
    del sent
