"""The scheduler's decisions on a clock the test moves: catch-up after downtime by each
rule, one-shots, heartbeats that cost nothing when there is nothing to do, jitter, a crash
between submitting a run and recording it, and a simulated day in seconds."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hermitcrab.config.schema import Config
from hermitcrab.scheduler import ManualClock, Scheduler, SimulatedClock
from hermitcrab.scheduler.runner import source_id
from hermitcrab.scheduler.slots import jitter
from hermitcrab.store import Store
from hermitcrab.store.jobs import NOTHING_TO_DO, SKIPPED, SUBMITTED
from hermitcrab.store.sessions import Event

HOUR = 3600.0
DAY = 86400.0
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC).timestamp()  # a Monday, 08:00 UTC


def config(**scheduler: Any) -> Config:
    return Config.model_validate({"version": 1, "scheduler": {"timezone": "UTC", **scheduler}})


class Inbox:
    """Commits each submitted message as the gateway does (once per source id), and keeps
    what it was asked."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.taken: list[tuple[str, str, dict[str, Any]]] = []

    async def __call__(
        self,
        session_id: str,
        text: str,
        agent: str | None,
        source: str,
        source_id: str | None = None,
        **options: Any,
    ) -> Event:
        self.store.sessions.ensure_session(session_id, agent or "main")
        data = {"role": "user", "text": text, "source": source, "source_id": source_id, **options}
        event, new = self.store.sessions.append_inbound(session_id, data, source_id)
        if not new:
            return dataclasses.replace(event, duplicate=True)
        self.taken.append((session_id, text, options))
        return event


@pytest.fixture
def store(tmp_path: Path):
    db = Store(tmp_path / "state.db")
    yield db
    db.close()


def scheduler(
    store: Store, clock, cfg: Config | None = None, workspace: Path | None = None
) -> tuple[Scheduler, Inbox]:
    inbox = Inbox(store)
    return Scheduler(
        store, cfg or config(), inbox, lambda agent: workspace or Path("/nonexistent"), clock
    ), inbox


def add(store: Store, created: float, **fields: Any):
    job = store.jobs.add("main", "s", fields.pop("text", "check the mail"), created_by="test", **fields)
    store._conn.execute("UPDATE jobs SET created_at = ? WHERE id = ?", (created, job.id))
    return store.jobs.get(job.id)


def test_a_daily_job_missed_for_three_days_runs_once_then_keeps_its_time(store: Store) -> None:
    job = add(store, T0, cron="0 9 * * *")
    offset = jitter(job, 120.0)
    assert 0 < offset < 120
    clock = ManualClock(T0 + 3 * DAY + 2 * HOUR)  # Thursday 10:00: Mon, Tue, Wed and Thu 09:00 missed
    sched, inbox = scheduler(store, clock)
    assert asyncio.run(sched.tick()) == 1
    [run] = store.jobs.history(job.id)
    assert run.outcome == SUBMITTED and run.missed == 3 and run.slot == T0 + 3 * DAY + HOUR
    assert asyncio.run(sched.tick()) == 0  # nothing doubles
    clock.set(T0 + 4 * DAY + HOUR + offset - 1)
    assert asyncio.run(sched.tick()) == 0  # jittered: not yet
    clock.advance(1)
    assert asyncio.run(sched.tick()) == 1
    assert store.jobs.slots(job.id) == [T0 + 3 * DAY + HOUR, T0 + 4 * DAY + HOUR]
    assert [session for session, _, options in inbox.taken] == [f"job-{job.id}"] * 2
    assert all(options["priority"] == "background" for _, _, options in inbox.taken)


def test_skip_passes_over_what_was_missed(store: Store) -> None:
    job = add(store, T0, cron="0 9 * * *", catch_up="skip")
    clock = ManualClock(T0 + 3 * DAY + 2 * HOUR)
    sched, inbox = scheduler(store, clock)
    assert asyncio.run(sched.tick()) == 0
    [run] = store.jobs.history(job.id)
    assert run.outcome == SKIPPED and run.missed == 3 and inbox.taken == []
    clock.set(T0 + 4 * DAY + HOUR + jitter(job, 120.0) + 5)  # on time again
    assert asyncio.run(sched.tick()) == 1


def test_all_runs_each_missed_slot_up_to_its_bound(store: Store) -> None:
    job = add(store, T0, every_s=HOUR, catch_up="all", catch_up_max=5)
    clock = ManualClock(T0 + 30 * HOUR + 60)
    sched, inbox = scheduler(store, clock)
    assert asyncio.run(sched.tick()) == 5
    runs = sorted(store.jobs.history(job.id), key=lambda r: r.slot)
    assert [r.slot for r in runs] == [T0 + h * HOUR for h in range(26, 31)]
    assert runs[0].missed == 25 and all(r.missed == 0 for r in runs[1:])
    assert len(inbox.taken) == 5


def test_a_one_shot_runs_once_however_late_and_is_done(store: Store) -> None:
    job = add(store, T0, run_at=T0 + HOUR)
    clock = ManualClock(T0 + 5 * HOUR)
    sched, _ = scheduler(store, clock)
    assert asyncio.run(sched.tick()) == 1
    assert store.jobs.get(job.id).state == "done"
    clock.advance(DAY)
    assert asyncio.run(sched.tick()) == 0


def test_a_run_submitted_just_before_a_crash_is_recorded_not_repeated(store: Store) -> None:
    job = add(store, T0, every_s=HOUR)
    slot = T0 + HOUR
    clock = ManualClock(slot + 10)
    # The gateway died after the run's message was committed and before the run was recorded.
    _, inbox = scheduler(store, clock)
    asyncio.run(inbox(f"job-{job.id}", job.text, "main", "scheduler", source_id(job, slot)))
    restarted, again = scheduler(store, clock)

    async def life() -> int:
        await restarted.start()
        submitted = await restarted.tick()
        await restarted.stop()
        return submitted

    assert asyncio.run(life()) == 0
    [run] = store.jobs.history(job.id)
    assert run.slot == slot and run.outcome == SUBMITTED and run.detail == "recorded after a restart"
    assert again.taken == [] and store.jobs.get(job.id).last_slot == slot


def test_a_heartbeat_with_nothing_to_do_makes_no_model_call(store: Store, tmp_path: Path) -> None:
    cfg = Config.model_validate(
        {
            "version": 1,
            "agents": {"main": {"heartbeat": {"every_minutes": 30}}},
            "scheduler": {"timezone": "UTC"},
        }
    )
    beat_file = tmp_path / "HEARTBEAT.md"
    beat_file.write_text("# Heartbeat\n\n<!-- add what to check,\n one line each -->\n\n")
    clock = ManualClock(T0)
    sched, inbox = scheduler(store, clock, cfg, tmp_path)

    async def life() -> tuple[int, int]:
        await sched.start()
        clock.set(T0 + 31 * 60)
        quiet = await sched.tick()
        beat_file.write_text("# Heartbeat\n- tell me if the backup failed\n")
        clock.set(T0 + 61 * 60)
        await asyncio.sleep(0)  # the scheduler's own loop may take this slot first: either way, once
        busy = await sched.tick() + len(inbox.taken)
        await sched.stop()
        return quiet, busy

    assert store.jobs.all() == []  # made from the config at start
    quiet, _ = asyncio.run(life())
    [job] = store.jobs.all(live_only=True)
    assert job.kind == "heartbeat" and job.every_s == 1800 and job.created_at == T0
    first, second = sorted(store.jobs.history(job.id), key=lambda r: r.slot)
    assert first.outcome == NOTHING_TO_DO and quiet == 0
    assert second.outcome == SUBMITTED
    [(session, text, options)] = inbox.taken
    assert session == "heartbeat-main" and "tell me if the backup failed" in text and options["heartbeat"]


def test_top_of_hour_jobs_are_spread_and_others_are_not(store: Store) -> None:
    hourly = [add(store, T0, cron="0 * * * *") for _ in range(20)]
    offsets = {round(jitter(job, 120.0), 3) for job in hourly}
    assert len(offsets) == 20 and all(0 <= o < 120 for o in offsets)
    assert jitter(add(store, T0, cron="15 * * * *"), 120.0) == 0
    assert jitter(hourly[0], 0) == 0


def test_a_simulated_day_runs_every_slot_exactly_once(store: Store) -> None:
    job = add(store, T0, every_s=300)  # every 5 minutes: 288 slots in a day
    clock = SimulatedClock(T0, speed=DAY / 4)  # a day in four seconds

    async def day() -> None:
        sched, _ = scheduler(store, clock)
        await sched.start()
        while clock.now() < T0 + DAY + 1:
            await asyncio.sleep(0.05)
        await sched.stop()

    asyncio.run(day())
    slots = store.jobs.slots(job.id)
    assert len(slots) == len(set(slots))
    assert slots[0] == T0 + 300
    # Every slot ran, none twice; a late tick catches up with one run that stands for the
    # slots it passed ("once"). The day is over when the test stops it: 288 slots at least.
    runs = store.jobs.history(job.id, limit=1000)
    assert sum(1 + r.missed for r in runs) == round((slots[-1] - T0) / 300) >= 288
