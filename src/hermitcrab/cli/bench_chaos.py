"""`hermitcrab bench chaos`: kill -9 the daemon at random moments and count the harm.

A fresh home in a temporary folder runs the real daemon with a scripted model that, for
each message, makes one non-idempotent tool call (exec appends the message's text to a
counter file in the workspace) and then answers. Once that file is there, the injection
guard holds later exec calls for a person (a command wrote it, not the agent): the driver
is that person and approves what waits, so approvals that outlive a kill are tested too.
A client sends messages (each with its own source id, re-sent after a failed request, as a
real client retries), a scheduled job runs every few seconds, and the driver kills the
daemon with SIGKILL at random moments and starts it again. At the end every count of harm must be 0:

- lost: a message the client sent that has no reply;
- duplicated_replies: a message answered more than once;
- duplicated_side_effects: a message whose tool call ran more than once;
- missed_slots: scheduled slots neither run nor stood for by a run (catch-up "once");
- leftover_processes: processes still working in the home after `down`.

The store must also pass SQLite's integrity check.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from hermitcrab.cli.bench_home import BenchHome, report

COUNTER = "chaos-counter.txt"
JOB_EVERY_S = 5
SETTLE_TIMEOUT_S = 60.0  # with no new answer for this long, what is unanswered is lost
CONFIG = """\
version: 1
gateway:
  port: {port}
  turn_timeout_seconds: 60
models:
  scripted:
    provider: scripted
    replies:
      - after: user
        calls:
          - name: exec
            arguments: {{command: "echo '{{last_user}}' >> /workspace/{counter}"}}
      - after: tool
        text: "done: {{last_user}}"
agents:
  main:
    model: scripted
    tools: [exec]
"""


class Chaos(BenchHome):
    def __init__(self, home: Path, seed: int) -> None:
        super().__init__(home)
        self.random = random.Random(seed)
        self.sent: dict[str, str] = {}  # source id -> text
        self.unsent: list[str] = []  # source ids whose request failed: sent again later
        self.kills = 0
        self.approvals = 0

    def setup(self) -> None:
        self.onboard(CONFIG.format(port=self.port, counter=COUNTER))
        self.hc("up")
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
            trust_env=False,
        )
        self._request("POST", "/api/jobs", json={"text": "job tick", "every": f"{JOB_EVERY_S}s"})

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(200):
            try:
                return self.client.request(method, path, **kwargs)
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"the gateway does not answer {method} {path}")

    def send(self, source_id: str) -> None:
        text = self.sent[source_id]
        try:
            response = self.client.post(
                "/api/sessions/chaos/messages", json={"text": text, "source_id": source_id}, timeout=5
            )
            if response.status_code in (200, 202):
                return
        except httpx.TransportError:
            pass
        self.unsent.append(source_id)

    def approve_pending(self) -> None:
        with contextlib.suppress(httpx.TransportError, ValueError, KeyError):
            for approval in self.client.get("/api/approvals", timeout=5).json()["approvals"]:
                if approval["state"] == "pending":
                    self.client.post(
                        f"/api/approvals/{approval['id']}",
                        json={"decision": "approve", "actor": "chaos"},
                        timeout=5,
                    )
                    self.approvals += 1

    def kill(self) -> None:
        pid = self.pid
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.01)
        self.kills += 1

    def round(self, index: int, per_round: int) -> None:
        retry, self.unsent = self.unsent, []
        for source_id in retry:
            self.send(source_id)
        for n in range(per_round):
            source_id = f"m{index}-{n}"
            self.sent[source_id] = f"message {source_id}"
            self.send(source_id)
        pause = self.random.uniform(0.0, 0.4)  # mid-turn, mid-tool, mid-commit: anywhere
        time.sleep(pause / 2)
        self.approve_pending()
        time.sleep(pause / 2)
        self.kill()
        self.hc("up")

    def settle(self) -> None:
        """Send what never got through, then wait until every message has its answer, for
        as long as answers keep coming (a backlog after many kills takes a while)."""
        while self.unsent:
            retry, self.unsent = self.unsent, []
            for source_id in retry:
                self.send(source_id)
        progress, answered_before = time.monotonic(), -1
        while time.monotonic() - progress < SETTLE_TIMEOUT_S:
            asked, answered = self._progress()
            if asked >= len(self.sent) and answered >= asked:
                return
            if answered != answered_before:
                progress, answered_before = time.monotonic(), answered
            self.approve_pending()
            time.sleep(0.2)

    def _progress(self) -> tuple[int, int]:
        """Messages in the chaos session, and how many of them have an answer (read from the
        store: the events API pages, and this counts thousands)."""
        with self.store() as db:
            asked = db.execute(
                "SELECT COUNT(*) FROM events WHERE session_id = 'chaos' AND kind = 'message'"
            ).fetchone()[0]
            answered = db.execute(
                "SELECT COUNT(DISTINCT reply_to) FROM events WHERE session_id = 'chaos' "
                "AND kind IN ('reply', 'turn.failed')"
            ).fetchone()[0]
        return int(asked), int(answered)

    def leftovers(self) -> int:
        """Processes still working in this home after `down` (a sandbox a kill orphaned)."""
        home = str(self.home.resolve())
        count = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/cwd").startswith(home):
                        count += 1
        return count

    def verdict(self, seconds: float) -> dict[str, Any]:
        self.client.close()
        self.hc("down", check=False)
        deadline = time.monotonic() + 10
        while self.leftovers() and time.monotonic() < deadline:  # a sandbox stops with its gateway
            time.sleep(0.1)
        with self.store() as db:  # the daemon is down: nothing else has it open
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            messages = db.execute(
                "SELECT id, source_id FROM events WHERE session_id = 'chaos' AND kind = 'message'"
            ).fetchall()
            answers = db.execute(
                "SELECT reply_to, COUNT(*) AS n FROM events WHERE session_id = 'chaos' "
                "AND kind IN ('reply', 'turn.failed') GROUP BY reply_to"
            ).fetchall()
            runs = db.execute("SELECT slot, missed FROM job_runs ORDER BY slot").fetchall()
            job = db.execute("SELECT created_at, last_slot FROM jobs ORDER BY id LIMIT 1").fetchone()
        answered = {r["reply_to"]: r["n"] for r in answers}
        # Per source id, every message kept for it (one, unless de-duplication failed).
        replies_for: dict[str, int] = {}
        for row in messages:
            replies_for[row["source_id"]] = replies_for.get(row["source_id"], 0) + answered.get(row["id"], 0)
        lost = sum(1 for sid in self.sent if replies_for.get(sid, 0) == 0)
        duplicated_replies = sum(n - 1 for n in replies_for.values() if n > 1)
        lines = (self.home / "workspace" / COUNTER).read_text().splitlines()
        per_text: dict[str, int] = {}
        for line in lines:
            per_text[line] = per_text.get(line, 0) + 1
        duplicated = sum(n - 1 for text, n in per_text.items() if n > 1 and text.startswith("message "))
        stood_for = sum(1 + r["missed"] for r in runs if r["slot"] <= (job["last_slot"] or 0))
        due = round(((job["last_slot"] or job["created_at"]) - job["created_at"]) / JOB_EVERY_S)
        return {
            "kills": self.kills,
            "messages": len(self.sent),
            "replies": sum(min(replies_for.get(sid, 0), 1) for sid in self.sent),
            "lost": lost,
            "duplicated_side_effects": duplicated,
            "duplicated_replies": duplicated_replies,
            "missed_slots": max(due - stood_for, 0),
            "job_runs": len(runs),
            "approvals": self.approvals,
            "store_integrity": integrity,
            "leftover_processes": self.leftovers(),
            "seconds": round(seconds, 1),
        }


def run(kills: int, per_round: int = 3, seed: int = 7) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hc-chaos-") as tmp:
        chaos = Chaos(Path(tmp), seed)
        started = time.monotonic()
        try:
            chaos.setup()
            for index in range(kills):
                chaos.round(index, per_round)
            chaos.settle()
            return chaos.verdict(time.monotonic() - started)
        finally:
            chaos.hc("down", check=False)


def chaos(json_output: bool, kills: int) -> None:
    results = run(kills)
    report(results, json_output)
    if json_output:
        return
    harm = sum(
        results[k]
        for k in (
            "lost",
            "duplicated_side_effects",
            "duplicated_replies",
            "missed_slots",
            "leftover_processes",
        )
    )
    print("no harm" if harm == 0 and results["store_integrity"] == "ok" else "HARM FOUND")
