"""The scheduler's loop: wake at the next due slot, decide each due job's runs by its
catch-up rule, submit them as turns, record them, sleep again.

A run's message carries the source id `job:ID:SLOT`, so a crash between submitting it and
recording it can neither lose the run nor make it twice: the next start finds the message
and records it, and a second submission of the slot is refused as a duplicate."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from hermitcrab.agent.provenance import file_taint
from hermitcrab.config.schema import Config, HeartbeatConfig
from hermitcrab.scheduler import heartbeat
from hermitcrab.scheduler.clock import Clock, SystemClock
from hermitcrab.scheduler.slots import due, first_after, jitter
from hermitcrab.store import Store
from hermitcrab.store.jobs import (
    FAILED,
    HEARTBEAT_JOB,
    NOTHING_TO_DO,
    SKIPPED,
    SUBMITTED,
    Job,
)
from hermitcrab.store.sessions import Event

log = logging.getLogger("hermitcrab.scheduler")

LATE_AFTER_S = 60.0  # a slot run later than this after it was due counts as missed
MAX_SLEEP_S = 3600.0  # wake at least this often, whatever the jobs say


class Submit(Protocol):
    def __call__(
        self,
        session_id: str,
        text: str,
        agent_name: str | None,
        source: str,
        source_id: str | None = None,
        **options: Any,
    ) -> Awaitable[Event]: ...


def source_id(job: Job, slot: float) -> str:
    return f"job:{job.id}:{slot:.3f}"


class Scheduler:
    def __init__(
        self,
        store: Store,
        config: Config,
        submit: Submit,
        workspace_for: Callable[[str], Path],
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._submit = submit
        self._workspace_for = workspace_for
        self.clock: Clock = clock or SystemClock()
        self._wake = asyncio.Event()  # made again at start(): an event belongs to one loop
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one tick at a time (the loop's, and run-now's)
        self.lag_seconds = 0.0  # how late the last run started after it was due
        self.next_due: float | None = None
        self.last_error: str | None = None

    # --- life

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        await asyncio.to_thread(self._sync_heartbeats)
        await self._reconcile()
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def poke(self) -> None:
        """Look again now (a job was added or removed)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick()
            except Exception as exc:  # a bad job must not stop every other
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("scheduler tick failed")
            wait = MAX_SLEEP_S if self.next_due is None else self.next_due - self.clock.now()
            await self.clock.wait(min(max(wait, 0.0), MAX_SLEEP_S), self._wake)

    # --- deciding

    async def tick(self) -> int:
        """Run what is due now; return how many runs were submitted."""
        async with self._lock:
            now = self.clock.now()
            submitted = 0
            soonest: float | None = None
            for job in await self._store.aio.jobs.all(live_only=True):
                ran, next_due = await self._decide(job, now)
                submitted += ran
                if next_due is not None:
                    soonest = next_due if soonest is None else min(soonest, next_due)
            self.next_due = soonest
            return submitted

    async def _decide(self, job: Job, now: float) -> tuple[int, float | None]:
        """Run the job's due slots by its catch-up rule: (runs submitted, when it is next due)."""
        settings = self._config.scheduler
        offset = jitter(job, settings.top_of_hour_jitter_seconds)
        keep = job.catch_up_max if job.catch_up == "all" else 1
        slots, count = due(job, now - offset, settings.timezone, keep)
        if not slots:
            next_due = self._due_after(job, job.last_slot if job.last_slot is not None else job.created_at)
            if next_due != job.next_due:
                await self._store.aio.jobs.set_next(job.id, next_due)
            return 0, next_due
        latest = slots[-1]
        late = now - (latest + offset)
        # (slot, run it?, slots missed that this entry stands for, beyond its own)
        plan: list[tuple[float, bool, int]]
        if job.catch_up == "skip":
            plan = [(latest, late <= LATE_AFTER_S, count - 1)]
        elif job.catch_up == "all":
            plan = [(slot, True, count - len(slots) if i == 0 else 0) for i, slot in enumerate(slots)]
        else:  # once: one run for everything missed
            plan = [(latest, True, count - 1)]
        runs = []
        submitted = 0
        ran_at = self.clock.now()
        for slot, run, missed in plan:
            gone = f"{missed} missed slot(s) not run (catch_up: {job.catch_up})" if missed else None
            if not run:
                runs.append(
                    (slot, slot + offset, SKIPPED, None, None, missed, f"late by {late:.0f} s; {gone or ''}")
                )
                continue
            outcome, session_id, message_id, detail = await self._run(job, slot)
            submitted += outcome == SUBMITTED
            self.lag_seconds = max(ran_at - (slot + offset), 0.0)
            runs.append(
                (
                    slot,
                    slot + offset,
                    outcome,
                    session_id,
                    message_id,
                    missed,
                    "; ".join(filter(None, (detail, gone))) or None,
                )
            )
        next_due = self._due_after(job, latest)
        await self._store.aio.jobs.record(job, runs, latest, next_due, ran_at, job.run_at is not None)
        return submitted, next_due

    def _due_after(self, job: Job, after: float) -> float | None:
        """When the job's first slot after `after` starts, its jitter included; None for a
        one-shot that has had its slot."""
        slot = first_after(job, after, self._config.scheduler.timezone)
        return None if slot is None else slot + jitter(job, self._config.scheduler.top_of_hour_jitter_seconds)

    # --- running

    def _session_for(self, job: Job) -> str:
        if job.kind == HEARTBEAT_JOB:
            return f"heartbeat-{job.agent}"[:128]
        return job.session_id if self._config.scheduler.job_sessions == "main" else f"job-{job.id}"

    async def _run(self, job: Job, slot: float) -> tuple[str, str | None, int | None, str | None]:
        """Submit one run's turn (or, for a heartbeat with nothing to do, nothing at all)."""
        session_id = self._session_for(job)
        options: dict[str, Any] = {"priority": "background", "job": job.id, "slot": slot}
        if job.model is not None:
            options["model"] = job.model
        if job.tainted:
            options["taint"] = [f"a job scheduled in a tainted turn (job {job.id})"]
        text = job.text
        if job.kind == HEARTBEAT_JOB:
            workspace = self._workspace_for(job.agent)
            try:
                content = await asyncio.to_thread(_read_small, workspace / job.text)
            except OSError as exc:
                return NOTHING_TO_DO, None, None, f"{job.text}: {exc.strerror or exc}"
            if not heartbeat.has_work(content):
                return NOTHING_TO_DO, None, None, f"{job.text} asks for nothing"
            mark = await self._store.aio.file_marks.get(job.agent, job.text)
            reason = file_taint(mark, workspace, job.text, job.text)
            if reason:
                options["taint"] = [reason]
            options["heartbeat"] = True
            text = heartbeat.prompt(job.text, content)
        try:
            event = await self._submit(
                session_id, text, job.agent, source="scheduler", source_id=source_id(job, slot), **options
            )
        except Exception as exc:  # an agent gone from the config, a full disk: recorded, not retried
            log.warning("job %s could not run: %s", job.id, exc)
            return FAILED, session_id, None, f"{type(exc).__name__}: {exc}"
        return (
            SUBMITTED,
            session_id,
            event.id,
            "already submitted before a restart" if event.duplicate else None,
        )

    async def run_now(self, job_id: int) -> tuple[str, str | None, int | None, str | None]:
        """Run a job once, now, outside its schedule (its slots are untouched)."""
        job = await self._store.aio.jobs.get(job_id)
        if job is None or job.state != "scheduled":
            raise LookupError(f"no scheduled job {job_id}")
        async with self._lock:
            now = self.clock.now()
            result = await self._run(job, now)
            await self._store.aio.jobs.record_manual(job, now, result)
        return result

    # --- keeping the table true

    async def _reconcile(self) -> None:
        """Runs whose message went in but whose record did not (a crash between the two)."""
        for job in await self._store.aio.jobs.all(live_only=True):
            prefix = f"job:{job.id}:"
            found = await self._store.aio.sessions.by_source_prefix(self._session_for(job), prefix)
            slots = sorted(
                (float(sid[len(prefix) :]), event_id, session_id)
                for sid, event_id, session_id in found
                if job.last_slot is None or float(sid[len(prefix) :]) > job.last_slot + 1e-6
            )
            if not slots:
                continue
            offset = jitter(job, self._config.scheduler.top_of_hour_jitter_seconds)
            runs = [
                (s, s + offset, SUBMITTED, sess, eid, 0, "recorded after a restart") for s, eid, sess in slots
            ]
            latest = slots[-1][0]
            await self._store.aio.jobs.record(
                job, runs, latest, self._due_after(job, latest), self.clock.now(), job.run_at is not None
            )
            log.info("job %s: %d run(s) recorded after a restart", job.id, len(runs))

    def _sync_heartbeats(self) -> None:
        """One heartbeat job per agent whose config asks for one, as the config says."""
        jobs = self._store.jobs
        wanted: dict[str, HeartbeatConfig] = {
            name: agent.heartbeat
            for name, agent in self._config.agents.items()
            if agent.heartbeat is not None
        }
        for job in jobs.all(live_only=True):
            if job.kind != HEARTBEAT_JOB:
                continue
            beat = wanted.get(job.agent)
            if beat is None or (job.every_s, job.model, job.text) != (
                beat.every_minutes * 60,
                beat.model,
                beat.file,
            ):
                jobs.set_state(job.id, "removed")
            else:
                wanted.pop(job.agent)
        for agent, beat in wanted.items():
            jobs.add(
                agent,
                f"heartbeat-{agent}",
                beat.file,
                every_s=beat.every_minutes * 60,
                created_by="config",
                name=f"heartbeat:{agent}",
                kind=HEARTBEAT_JOB,
                catch_up="skip",  # a missed look is not worth many: the next one sees the same file
                model=beat.model,
                created_at=self.clock.now(),
            )

    def status(self) -> dict[str, Any]:
        return {
            "next_due": self.next_due,
            "lag_seconds": round(self.lag_seconds, 3),
            "last_error": self.last_error,
        }


def _read_small(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(heartbeat.MAX_BYTES).decode(errors="replace")
