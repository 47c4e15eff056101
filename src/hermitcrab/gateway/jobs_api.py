"""Scheduled jobs over HTTP: what `hermitcrab cron` and the dashboard speak."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hermitcrab.errors import ConfigError
from hermitcrab.gateway.http import ApiError, read_json

if TYPE_CHECKING:
    from hermitcrab.gateway.service import Gateway
    from hermitcrab.scheduler import Scheduler

MAX_JOB_TEXT = 16 * 1024


def routes(gw: Gateway) -> list[Route]:
    async def scheduler() -> Scheduler:
        if gw.scheduler is None:
            raise ApiError(503, "starting", "the scheduler is starting; try again in a moment")
        return gw.scheduler

    async def list_jobs(request: Request) -> JSONResponse:
        everything = request.query_params.get("all") == "1"
        jobs = await gw.db.aio.jobs.all(live_only=not everything)
        return JSONResponse({"jobs": [j.to_json() for j in jobs]})

    async def add_job(request: Request) -> JSONResponse:
        from hermitcrab.scheduler.slots import check_cron, parse_at, parse_every, zone

        body = await read_json(request, gw.config.gateway.max_request_bytes)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_request", "send a JSON object")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_JOB_TEXT:
            raise ApiError(
                400, "invalid_request", f"'text' is what the agent is told: 1 to {MAX_JOB_TEXT} chars"
            )
        agent = body.get("agent") or gw.config.default_agent
        if agent not in gw.agents:
            raise ApiError(404, "unknown_agent", f"no agent named '{agent}'; known: {', '.join(gw.agents)}")
        given = [k for k in ("cron", "every", "at") if body.get(k) is not None]
        if len(given) != 1:
            raise ApiError(400, "invalid_request", "give exactly one of 'cron', 'every' or 'at'")
        catch_up = body.get("catch_up", "once")
        if catch_up not in ("once", "skip", "all"):
            raise ApiError(400, "invalid_request", "'catch_up' is once (default), skip or all")
        model = body.get("model")
        if model is not None and model not in gw.config.models:
            raise ApiError(404, "unknown_model", f"no model named '{model}'")
        tz = body.get("tz")
        try:
            if tz is not None:
                zone(str(tz))
            schedule: dict[str, Any] = {}
            if body.get("cron") is not None:
                schedule["cron"] = check_cron(str(body["cron"]))
                schedule["tz"] = tz
            elif body.get("every") is not None:
                schedule["every_s"] = parse_every(str(body["every"]))
            else:
                schedule["run_at"] = parse_at(str(body["at"]), tz or gw.config.scheduler.timezone)
                if schedule["run_at"] < time.time():
                    raise ConfigError(f"{body['at']} is in the past")
        except ConfigError as exc:
            raise ApiError(400, "invalid_schedule", str(exc)) from None
        name = body.get("name")
        job = await gw.db.aio.jobs.add(
            agent,
            str(body.get("session") or f"cron-{agent}"),
            text,
            **schedule,
            created_by="owner",
            name=str(name) if name else None,
            catch_up=catch_up,
            catch_up_max=gw.config.scheduler.catch_up_max,
            model=model,
        )
        (await scheduler()).poke()
        return JSONResponse({"job": job.to_json()}, status_code=201)

    async def remove_job(request: Request) -> JSONResponse:
        job_id = _job_id(request)
        if not await gw.db.aio.jobs.set_state(job_id, "removed"):
            raise ApiError(404, "unknown_job", f"no scheduled job {job_id}")
        (await scheduler()).poke()
        return JSONResponse({"removed": job_id})

    async def run_now(request: Request) -> JSONResponse:
        job_id = _job_id(request)
        try:
            outcome, session_id, message_id, detail = await (await scheduler()).run_now(job_id)
        except LookupError as exc:
            raise ApiError(404, "unknown_job", str(exc)) from None
        return JSONResponse(
            {
                "job": job_id,
                "outcome": outcome,
                "session_id": session_id,
                "message_id": message_id,
                "detail": detail,
            }
        )

    async def history(request: Request) -> JSONResponse:
        raw = request.query_params.get("job")
        limit = request.query_params.get("limit", "100")
        if (raw is not None and not raw.isdigit()) or not limit.isdigit():
            raise ApiError(400, "invalid_request", "'job' and 'limit' are numbers")
        runs = await gw.db.aio.jobs.history(int(raw) if raw else None, min(int(limit), 1000))
        return JSONResponse({"runs": [r.to_json() for r in runs]})

    return [
        Route("/api/jobs", list_jobs),
        Route("/api/jobs", add_job, methods=["POST"]),
        Route("/api/jobs/history", history),
        Route("/api/jobs/{job_id}", remove_job, methods=["DELETE"]),
        Route("/api/jobs/{job_id}/run", run_now, methods=["POST"]),
    ]


def _job_id(request: Request) -> int:
    raw = request.path_params["job_id"]
    if not raw.isdigit():
        raise ApiError(400, "invalid_request", "a job id is a number")
    return int(raw)
