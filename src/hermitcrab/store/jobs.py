"""Durable jobs (what the `schedule` tool, `hermitcrab cron` and the heartbeat config
record) and the history of their runs. The scheduler decides when; this remembers."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

MESSAGE_JOB = "message"  # tells the agent its text as a new turn
HEARTBEAT_JOB = "heartbeat"  # reads HEARTBEAT.md, and makes no model call when it is empty
CATCH_UPS = ("once", "skip", "all")

# What a run did.
SUBMITTED = "submitted"  # its message went in; the turn is the session's
NOTHING_TO_DO = "nothing_to_do"  # a heartbeat with an empty HEARTBEAT.md: no model call
SKIPPED = "skipped"  # a missed slot passed over by its catch-up rule
FAILED = "failed"


@dataclass(frozen=True)
class Job:
    id: int
    agent: str
    session_id: str  # where it was made (a run goes there when job sessions are "main")
    text: str
    run_at: float | None  # once, at this time
    cron: str | None  # or on this cron expression, in `tz`
    every_s: float | None  # or every this many seconds
    tz: str | None
    tainted: bool
    created_by: str
    created_at: float
    state: str  # scheduled, done (a one-shot that ran), removed
    name: str | None
    kind: str
    catch_up: str
    catch_up_max: int
    model: str | None  # a model route of its own (a cheaper one for heartbeats)
    last_slot: float | None  # the latest slot decided (run, or skipped by its rule)
    next_due: float | None
    runs: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def schedule(self) -> str:
        if self.cron is not None:
            return f"cron {self.cron}" + (f" ({self.tz})" if self.tz else "")
        if self.every_s is not None:
            return f"every {self.every_s:g} s"
        return f"at {self.run_at}"


@dataclass(frozen=True)
class JobRun:
    id: int
    job_id: int
    slot: float
    due_at: float
    ran_at: float
    outcome: str
    session_id: str | None
    message_id: int | None
    missed: int  # slots this run stands for beyond its own (catch-up "once")
    detail: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Jobs:
    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def add(
        self,
        agent: str,
        session_id: str,
        text: str,
        *,
        run_at: float | None = None,
        cron: str | None = None,
        every_s: float | None = None,
        tz: str | None = None,
        tainted: bool = False,
        created_by: str,
        name: str | None = None,
        kind: str = MESSAGE_JOB,
        catch_up: str = "once",
        catch_up_max: int = 10,
        model: str | None = None,
        next_due: float | None = None,
        created_at: float | None = None,
    ) -> Job:
        if sum(x is not None for x in (run_at, cron, every_s)) != 1:
            raise ValueError("a job runs at a time, on a cron expression, or every N seconds: exactly one")
        if catch_up not in CATCH_UPS:
            raise ValueError(f"catch_up is one of {', '.join(CATCH_UPS)}")
        with self._lock:
            cur = self._conn.execute(
                """INSERT INTO jobs (agent, session_id, text, run_at, cron, every_s, tz, tainted,
                       created_by, created_at, name, kind, catch_up, catch_up_max, model, next_due)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    agent,
                    session_id,
                    text,
                    run_at,
                    cron,
                    every_s,
                    tz,
                    int(tainted),
                    created_by,
                    time.time() if created_at is None else created_at,
                    name,
                    kind,
                    catch_up,
                    catch_up_max,
                    model,
                    next_due,
                ),
            )
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _job(row)

    def get(self, job_id: int) -> Job | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def all(self, agent: str | None = None, *, live_only: bool = False) -> list[Job]:
        query = "SELECT * FROM jobs"
        where, args = [], []
        if agent is not None:
            where.append("agent = ?")
            args.append(agent)
        if live_only:
            where.append("state = 'scheduled'")
        if where:
            query += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY id", args).fetchall()
        return [_job(r) for r in rows]

    def by_name(self, name: str) -> Job | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT * FROM jobs WHERE name = ? AND state = 'scheduled' ORDER BY id DESC LIMIT 1", (name,)
            ).fetchone()
        return _job(row) if row else None

    def set_state(self, job_id: int, state: str) -> bool:
        with self._lock:
            cur = self._conn.execute(
                "UPDATE jobs SET state = ? WHERE id = ? AND state = 'scheduled'", (state, job_id)
            )
        return cur.rowcount == 1

    def set_next(self, job_id: int, next_due: float | None) -> None:
        with self._lock:
            self._conn.execute("UPDATE jobs SET next_due = ? WHERE id = ?", (next_due, job_id))

    def record(
        self,
        job: Job,
        runs: list[tuple[float, float, str, str | None, int | None, int, str | None]],
        last_slot: float,
        next_due: float | None,
        ran_at: float,
        done: bool,
    ) -> None:
        """One commit: the runs of these slots (slot, due_at, outcome, session, message,
        missed, detail), how far the job has got, and when it is next due. A slot recorded
        once is never recorded again (a run that a crash cut short is taken up by its
        message's source id, not run twice)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for slot, due_at, outcome, session_id, message_id, missed, detail in runs:
                    self._conn.execute(
                        """INSERT OR IGNORE INTO job_runs
                               (job_id, slot, due_at, ran_at, outcome, session_id, message_id, missed, detail)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                        (job.id, slot, due_at, ran_at, outcome, session_id, message_id, missed, detail),
                    )
                self._conn.execute(
                    """UPDATE jobs SET last_slot = ?, next_due = ?, runs = runs + ?,
                           state = CASE WHEN ? = 1 AND state = 'scheduled' THEN 'done' ELSE state END
                       WHERE id = ?""",
                    (last_slot, next_due, sum(1 for r in runs if r[2] != SKIPPED), int(done), job.id),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def record_manual(
        self, job: Job, when: float, result: tuple[str, str | None, int | None, str | None]
    ) -> None:
        """A run a person asked for (`cron run-now`): in the history, its schedule untouched."""
        outcome, session_id, message_id, detail = result
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    """INSERT OR IGNORE INTO job_runs
                           (job_id, slot, due_at, ran_at, outcome, session_id, message_id, missed, detail)
                       VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)""",
                    (job.id, when, when, when, outcome, session_id, message_id, detail or "run now, by hand"),
                )
                self._conn.execute("UPDATE jobs SET runs = runs + 1 WHERE id = ?", (job.id,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def history(self, job_id: int | None = None, limit: int = 100) -> list[JobRun]:
        with self._lock:
            if job_id is None:
                rows = self._conn.execute(
                    "SELECT * FROM job_runs ORDER BY id DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT * FROM job_runs WHERE job_id = ? ORDER BY id DESC LIMIT ?", (job_id, limit)
                ).fetchall()
        return [JobRun(**dict(r)) for r in rows]

    def slots(self, job_id: int) -> list[float]:
        """Every slot this job has a run for, oldest first (for checks that none doubled)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT slot FROM job_runs WHERE job_id = ? ORDER BY slot", (job_id,)
            ).fetchall()
        return [r["slot"] for r in rows]


def _job(row: sqlite3.Row) -> Job:
    data = dict(row)
    data["tainted"] = bool(data["tainted"])
    return Job(**data)
