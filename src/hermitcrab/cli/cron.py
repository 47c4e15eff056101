"""`hermitcrab cron add|list|remove|run-now|history`: scheduled jobs, through the gateway."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from hermitcrab.cli.approvals import _client
from hermitcrab.cli.output import print_json, shown


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def add(
    text: str,
    cron: str | None,
    every: str | None,
    at: str | None,
    tz: str | None,
    agent: str | None,
    catch_up: str,
    name: str | None,
    model: str | None,
    json_output: bool,
) -> None:
    body: dict[str, Any] = {"text": text, "cron": cron, "every": every, "at": at, "catch_up": catch_up}
    body.update({k: v for k, v in (("tz", tz), ("agent", agent), ("name", name), ("model", model)) if v})
    job = _client().request("POST", "/api/jobs", json=body)["job"]
    if json_output:
        print_json(job)
        return
    print(f"job {job['id']}: {_schedule(job)}, next {_when(job['next_due'])}")


def _schedule(job: dict[str, Any]) -> str:
    if job["cron"]:
        return f"cron '{job['cron']}'" + (f" ({job['tz']})" if job["tz"] else "")
    if job["every_s"]:
        return f"every {job['every_s']:g} s"
    return f"once at {_when(job['run_at'])}"


def list_jobs(all_: bool, json_output: bool) -> None:
    jobs = _client().request("GET", "/api/jobs", params={"all": "1"} if all_ else {})["jobs"]
    if json_output:
        print_json({"jobs": jobs})
        return
    if not jobs:
        print("No scheduled jobs. Add one with `hermitcrab cron add TEXT --cron '0 9 * * *'`.")
    for job in jobs:
        label = job["name"] or job["kind"]
        print(
            f"{job['id']:>4}  {label:<18} {job['agent']:<10} {_schedule(job):<32} "
            f"next {_when(job['next_due'])}  runs {job['runs']}  {job['state']}"
        )
        print(f"{'':>6}{shown(job['text'][:100], True)}")


def remove(job_id: int) -> None:
    _client().request("DELETE", f"/api/jobs/{job_id}")
    print(f"removed job {job_id}")


def run_now(job_id: int, json_output: bool) -> None:
    result = _client().request("POST", f"/api/jobs/{job_id}/run")
    if json_output:
        print_json(result)
        return
    where = (
        f" in session {result['session_id']} (message {result['message_id']})" if result["message_id"] else ""
    )
    detail = f": {shown(result['detail'], True)}" if result["detail"] else ""
    print(f"job {job_id}: {result['outcome']}{where}{detail}")


def history(job_id: int | None, limit: int, json_output: bool) -> None:
    params = {"limit": str(limit), **({"job": str(job_id)} if job_id is not None else {})}
    runs = _client().request("GET", "/api/jobs/history", params=params)["runs"]
    if json_output:
        print_json({"runs": runs})
        return
    if not runs:
        print("No job has run yet.")
    now = time.time()
    for run in runs:
        late = run["ran_at"] - run["due_at"]
        missed = f", stands for {run['missed']} missed" if run["missed"] else ""
        where = f" -> {run['session_id']}#{run['message_id']}" if run["message_id"] else ""
        ago = f"{(now - run['ran_at']) / 60:.0f} min ago"
        print(
            f"job {run['job_id']:>4}  slot {_when(run['slot'])}  {run['outcome']:<14} "
            f"late {late:.1f} s{missed}{where}  ({ago})"
        )
        if run["detail"]:
            print(f"{'':>10}{shown(run['detail'], True)}")
