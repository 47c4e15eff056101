"""The sandbox API: create, list, inspect, exec (output streamed), destroy, snapshot, restore,
and the audit log. `hermitcrab sandbox ...` and `hermitcrab audit` are its clients."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from hermitcrab.approvals import ApprovalError
from hermitcrab.errors import PolicyError, SandboxNotFound
from hermitcrab.gateway.http import ApiError, drain, read_json
from hermitcrab.gateway.service import APPROVALS_CHANNEL, Gateway

if TYPE_CHECKING:  # the runtime loads just after the gateway is ready, not before
    from hermitcrab.runtime import SandboxRuntime
    from hermitcrab.sandbox.base import ExecResult, OutputChunk

MAX_AUDIT_PAGE = 1000


def routes(gw: Gateway) -> list[Route]:
    async def runtime() -> SandboxRuntime:
        return await gw.sandbox_runtime()

    async def body(request: Request) -> dict[str, Any]:
        data = await read_json(request, gw.config.gateway.max_request_bytes)
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request", "the body must be a JSON object")
        return data

    def agent_for(name: str, data: dict[str, Any]) -> str:
        """The agent a new sandbox works for: as asked, else the agent of that name (one
        sandbox per agent), else the default agent."""
        agent = data.get("agent")
        if agent is None:
            return name if name in gw.agents else gw.config.default_agent
        if not isinstance(agent, str) or agent not in gw.agents:
            raise ApiError(
                400,
                "unknown_agent",
                f"no agent named {agent!r}. fix: use one of {', '.join(gw.agents)} "
                "(agents: in hermitcrab.yaml)",
            )
        return agent

    async def list_sandboxes(request: Request) -> JSONResponse:
        return JSONResponse({"sandboxes": (await runtime()).list()})

    async def create(request: Request) -> JSONResponse:
        data = await body(request)
        name = _string(data, "name")
        workspace = data.get("workspace")
        if workspace and _has_entries(Path(workspace)):
            # The sandbox's uid takes over its workspace (chown): never a tree of someone's
            # that HermitCrab did not make, whose owners would not come back.
            raise ApiError(
                400,
                "workspace_not_empty",
                f"{workspace} is not empty, and a sandbox's workspace becomes the sandbox user's. "
                "fix: name an empty or new folder, or copy what the sandbox needs into one",
            )
        info = await (await runtime()).create(
            name,
            policy_text=data.get("policy"),
            workspace=Path(workspace) if workspace else None,
            actor=_actor(data),
            agent=agent_for(name, data),
        )
        return JSONResponse(info, status_code=201)

    async def show(request: Request) -> JSONResponse:
        return JSONResponse(_found_in(await runtime(), lambda rt: rt.info(request.path_params["name"])))

    async def destroy(request: Request) -> JSONResponse:
        name = request.path_params["name"]
        try:
            await (await runtime()).destroy(name, actor=request.query_params.get("actor", "api"))
        except SandboxNotFound as exc:
            raise ApiError(404, "unknown_sandbox", str(exc)) from None
        return JSONResponse({"name": name, "destroyed": True})

    async def exec_command(request: Request) -> StreamingResponse:
        name = request.path_params["name"]
        _found_in(await runtime(), lambda rt: rt.get(name))
        data = await body(request)
        argv = data.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ApiError(400, "invalid_request", 'send {"argv": ["cmd", "arg", ...]}')
        stdin = base64.b64decode(data["stdin"]) if data.get("stdin") else None
        timeout = data.get("timeout")
        return StreamingResponse(
            _stream_exec(await runtime(), name, argv, data.get("cwd"), timeout, stdin, _actor(data)),
            media_type="application/x-ndjson",
        )

    async def snapshot(request: Request) -> JSONResponse:
        data = await body(request)
        name = request.path_params["name"]
        _found_in(await runtime(), lambda rt: rt.get(name))
        manifest = await (await runtime()).snapshot(name, Path(_string(data, "path")), actor=_actor(data))
        return JSONResponse({"path": data["path"], "files": len(manifest["files"]), "manifest": manifest})

    async def restore(request: Request) -> JSONResponse:
        data = await body(request)
        name = _string(data, "name")
        policy = data.get("policy", "current")
        if policy not in ("current", "archive"):
            raise ApiError(400, "invalid_request", "'policy' must be current (the default) or archive")
        info = await (await runtime()).restore(
            Path(_string(data, "path")), name, actor=_actor(data), agent=agent_for(name, data),
            archive_policy=policy == "archive",
        )  # fmt: skip
        return JSONResponse(info, status_code=201)

    async def audit(request: Request) -> JSONResponse:
        sandbox = request.query_params.get("sandbox")
        try:
            limit = min(int(request.query_params.get("limit", "100")), MAX_AUDIT_PAGE)
        except ValueError:
            raise ApiError(400, "invalid_request", "'limit' must be a whole number") from None
        entries = await asyncio.to_thread((await runtime()).audit.entries, sandbox, limit)
        return JSONResponse({"entries": [e.to_json() for e in entries]})

    async def get_policy(request: Request) -> JSONResponse:
        rt = await runtime()
        return JSONResponse(
            {"path": str(rt.policy_file), "text": rt.default_policy_text(), "error": rt.policy_error}
        )

    async def put_policy(request: Request) -> JSONResponse:
        """Replace the policy file with `text`, checked first: a policy that does not load
        is refused with its error, and the file and the policy in force stay as they were."""
        from hermitcrab.policy.loader import parse_policy

        rt = await runtime()
        data = await body(request)
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "invalid_request", 'send {"text": "<the whole policy file>"}')
        try:
            parse_policy(text, str(rt.policy_file))
        except PolicyError as exc:
            raise ApiError(
                400, "invalid_policy", f"{exc}\nnothing changed: the policy in force stays"
            ) from None
        tmp = rt.policy_file.with_name(f".{rt.policy_file.name}.tmp")
        await asyncio.to_thread(tmp.write_text, text)
        await asyncio.to_thread(tmp.replace, rt.policy_file)
        return JSONResponse(rt.reload_policy(actor=_actor(data)))

    async def reload_policy(request: Request) -> JSONResponse:
        outcome = (await runtime()).reload_policy(actor="cli")
        if not outcome["applied"]:
            raise ApiError(400, "invalid_policy", f"{outcome['error']}\nthe last good policy stays in force")
        return JSONResponse(outcome)

    async def list_approvals(request: Request) -> JSONResponse:
        await gw.sandbox_runtime()  # approvals start with it
        assert gw.approvals is not None
        items = gw.approvals.all() if request.query_params.get("all") else gw.approvals.pending()
        return JSONResponse({"approvals": [a.to_json() for a in items]})

    async def decide(request: Request) -> JSONResponse:
        await gw.sandbox_runtime()  # approvals start with it
        assert gw.approvals is not None
        data = await body(request)
        decision = data.get("decision")
        if decision not in ("approve", "deny"):
            raise ApiError(400, "invalid_request", 'send {"decision": "approve" | "deny", "always": false}')
        try:
            approval = gw.approvals.decide(
                request.path_params["approval_id"],
                decision == "approve",
                bool(data.get("always")),
                _actor(data),
            )
        except ApprovalError as exc:
            raise ApiError(404, "unknown_approval", str(exc)) from None
        except PolicyError as exc:  # `always` would have written a policy that does not load
            raise ApiError(400, "invalid_policy", f"{exc}\nnothing was decided") from None
        return JSONResponse(approval.to_json())

    async def approvals_ws(ws: WebSocket) -> None:
        await gw.sandbox_runtime()  # approvals start with it
        assert gw.approvals is not None
        with gw.hub.listen(APPROVALS_CHANNEL) as queue:
            await ws.accept()
            for approval in gw.approvals.pending():  # what is waiting now, then what changes
                await ws.send_json({"kind": "approval.pending", "data": approval.to_json()})
            # Read as well as write: a client that goes away must end this handler at once,
            # not when the next approval comes (or, holding up a shutdown, never).
            receiver = asyncio.create_task(drain(ws))
            try:
                while True:
                    getter = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                    if receiver in done or (event := getter.result()) is None:
                        getter.cancel()
                        return
                    await ws.send_json(event)
            except WebSocketDisconnect:
                return
            finally:
                receiver.cancel()

    return [
        Route("/api/sandboxes", list_sandboxes),
        Route("/api/sandboxes", create, methods=["POST"]),
        Route("/api/sandboxes/restore", restore, methods=["POST"]),
        Route("/api/sandboxes/{name}", show),
        Route("/api/sandboxes/{name}", destroy, methods=["DELETE"]),
        Route("/api/sandboxes/{name}/exec", exec_command, methods=["POST"]),
        Route("/api/sandboxes/{name}/snapshot", snapshot, methods=["POST"]),
        Route("/api/audit", audit),
        Route("/api/policy", get_policy),
        Route("/api/policy", put_policy, methods=["PUT"]),
        Route("/api/policy/reload", reload_policy, methods=["POST"]),
        Route("/api/approvals", list_approvals),
        Route("/api/approvals/{approval_id}", decide, methods=["POST"]),
        WebSocketRoute("/api/approvals/ws", approvals_ws),
    ]


async def _stream_exec(
    runtime: SandboxRuntime,
    name: str,
    argv: list[str],
    cwd: str | None,
    timeout: float | None,
    stdin: bytes | None,
    actor: str,
) -> AsyncIterator[bytes]:
    """Output lines as the command writes them, then one line with the result."""
    from hermitcrab.sandbox.base import ExecResult, OutputChunk

    queue: asyncio.Queue[OutputChunk | ExecResult | BaseException] = asyncio.Queue()

    async def run() -> None:
        try:
            result = await runtime.exec(
                name, argv, actor=actor, cwd=cwd, timeout=timeout, stdin=stdin, on_output=queue.put_nowait
            )
            queue.put_nowait(result)
        except Exception as exc:
            queue.put_nowait(exc)

    task = asyncio.create_task(run())
    try:
        while True:
            item = await queue.get()
            if isinstance(item, OutputChunk):
                line = {"stream": item.stream, "data": base64.b64encode(item.data).decode()}
            elif isinstance(item, ExecResult):
                result = item.to_json()
                del result["stdout"], result["stderr"]  # already streamed
                line = {"result": result}
            else:
                line = {"error": str(item)}
            yield json.dumps(line).encode() + b"\n"
            if not isinstance(item, OutputChunk):
                return
    finally:
        await task


def _found_in(runtime: SandboxRuntime, fn: Any) -> Any:
    try:
        return fn(runtime)
    except SandboxNotFound as exc:
        raise ApiError(404, "unknown_sandbox", str(exc)) from None


def _string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(400, "invalid_request", f"'{key}' must be a non-empty string")
    return value


def _actor(data: dict[str, Any]) -> str:
    actor = data.get("actor", "api")
    return actor if isinstance(actor, str) and actor else "api"


def _has_entries(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False
