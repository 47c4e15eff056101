"""The gateway's log: one JSON object a line, rotated before it fills the disk, the
owner's alone in every file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hermitcrab.gateway import logs


def test_the_log_rotates_and_every_file_stays_private(
    tmp_path: Path, monkeypatch, restore_root_logging
) -> None:
    monkeypatch.setattr(logs, "MAX_LOG_BYTES", 4096)
    monkeypatch.setattr(logs, "LOG_BACKUPS", 2)
    path = tmp_path / "logs" / "gateway.log"
    logs.setup_logging(path, also_stderr=False)
    log = logging.getLogger("hermitcrab.test")
    for n in range(200):
        log.info("line %d", n, extra={"session": "s1"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["gateway.log", "gateway.log.1", "gateway.log.2"]  # the oldest went
    for name in files:
        assert (path.parent / name).stat().st_mode & 0o777 == 0o600, name
        assert (path.parent / name).stat().st_size <= 4096 + 200
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["msg"] == "line 199" and last["session"] == "s1"


def test_a_line_logged_inside_a_turn_names_its_session_and_agent(
    tmp_path: Path, restore_root_logging
) -> None:
    import contextvars

    from hermitcrab.agent.turns import TURN_AGENT
    from hermitcrab.inference.queue import CALL_SESSION

    path = tmp_path / "gateway.log"
    logs.setup_logging(path, also_stderr=False)

    def in_a_turn() -> None:
        CALL_SESSION.set("s-42")
        TURN_AGENT.set("main")
        logging.getLogger("hermitcrab.tools").warning("the tool was slow")

    contextvars.copy_context().run(in_a_turn)
    logging.getLogger("hermitcrab.gateway").info("outside any turn")
    inside, outside = (json.loads(line) for line in path.read_text().splitlines())
    assert (inside["session"], inside["agent"]) == ("s-42", "main")
    assert "session" not in outside and "agent" not in outside
