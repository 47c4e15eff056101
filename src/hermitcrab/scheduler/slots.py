"""When a job is due: its slots (the times its schedule names), their jitter, and the parsing
of what a person types for a schedule. Pure functions of a job and a time."""

from __future__ import annotations

import hashlib
import math
import os
import re
from datetime import datetime, tzinfo
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hermitcrab.errors import ConfigError
from hermitcrab.store.jobs import Job

ENUMERATE_AT_MOST = 10_000  # missed cron slots counted one by one; past this, "at least"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@cache
def zone(name: str | None) -> tzinfo:
    """An IANA zone by name; None: this machine's own (TZ, then /etc/localtime), else UTC."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown time zone {name!r}. fix: use an IANA name such as Europe/Paris"
            ) from None
    local = os.environ.get("TZ", "").lstrip(":")
    if local:
        try:
            return ZoneInfo(local)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key=_localtime_name())
    except (OSError, ValueError):
        return ZoneInfo("UTC")


def _localtime_name() -> str:
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return "localtime"
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "localtime"


def check_cron(expression: str) -> str:
    from croniter import croniter

    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise ConfigError(
            f"{expression!r} is not a 5-field cron expression. fix: minute hour day month weekday, "
            "e.g. '0 9 * * 1-5' (9:00 on weekdays)"
        )
    return expression


def parse_every(text: str) -> float:
    """'90s', '30m', '2h', '1d' or a number of seconds; at least 1 s."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ConfigError(f"{text!r} is not an interval. fix: a number and a unit, e.g. 90s, 30m, 2h, 1d")
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds < 1:
        raise ConfigError(f"{text!r} is under a second. fix: every 1s at the least")
    return seconds


def parse_at(text: str, tz: str | None) -> float:
    """An ISO time; without an offset it is read in `tz` (or this machine's zone)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not an ISO time. fix: e.g. 2026-12-01T09:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone(tz))
    return when.timestamp()


def jitter(job: Job, window: float) -> float:
    """A cron job at the top of an hour starts this many seconds after its slot: the same
    offset every time for a job, different between jobs."""
    if job.cron is None or window <= 0 or job.cron.split()[0] not in ("0", "00"):
        return 0.0
    digest = hashlib.sha256(f"job:{job.id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 * window


def first_after(job: Job, after: float, tz: str | None) -> float | None:
    """The job's first slot strictly after `after` (None: a one-shot already past)."""
    if job.run_at is not None:
        return job.run_at if job.run_at > after else None
    if job.every_s is not None:
        steps = math.floor((after - job.created_at) / job.every_s) + 1
        return job.created_at + max(steps, 1) * job.every_s
    from croniter import croniter

    assert job.cron is not None
    start = datetime.fromtimestamp(after, zone(job.tz or tz))
    return float(croniter(job.cron, start).get_next(float))


def due(job: Job, now: float, tz: str | None, keep: int) -> tuple[list[float], int]:
    """Slots after the job's last decided one and at or before `now`: the latest `keep` of
    them, oldest first, and how many there are in all (at least, for a long outage)."""
    if job.run_at is not None:  # a one-shot: due once, however late (its rule decides)
        return ([job.run_at], 1) if job.last_slot is None and job.run_at <= now else ([], 0)
    after = job.last_slot if job.last_slot is not None else job.created_at
    first = first_after(job, after, tz)
    if first is None or first > now:
        return [], 0
    if job.every_s is not None:
        count = math.floor((now - first) / job.every_s) + 1
        last = first + (count - 1) * job.every_s
        return [last - i * job.every_s for i in range(min(count, keep) - 1, -1, -1)], count
    newest: list[float] = []
    count = 0
    slot: float | None = first
    while slot is not None and slot <= now and count < ENUMERATE_AT_MOST:
        count += 1
        newest = [*newest[-(keep - 1) :], slot] if keep > 1 else [slot]
        slot = first_after(job, slot, tz)
    if slot is not None and slot <= now:  # a long outage: the newest slots, walked back from now
        from croniter import croniter

        assert job.cron is not None
        back = croniter(job.cron, datetime.fromtimestamp(now + 0.5, zone(job.tz or tz)))
        newest = sorted(float(back.get_prev(float)) for _ in range(keep))
    return newest, count
