"""`hermitcrab sandbox ...` and `hermitcrab audit`: thin clients of the gateway's sandbox API."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from hermitcrab.cli.client import GatewayClient
from hermitcrab.cli.output import fail, print_json, shown
from hermitcrab.config.paths import Paths
from hermitcrab.errors import GatewayError


def _client() -> GatewayClient:
    client = GatewayClient(Paths.from_env(), timeout=60)
    if client.health() is None:
        fail(f"the gateway at {client.base_url} is not running; sandboxes live in it. fix: `hermitcrab up`")
    return client


def _row(info: dict[str, Any]) -> str:
    state = "running" if info["running"] else "stopped"
    return (
        f"{info['name']:<20} {state:<8} processes={info['processes']:<3} landlock={info['landlock']:<11} "
        f"agent={info.get('agent') or '-'} policy={info['policy_version']} workspace={info['workspace']}"
    )


def create(
    name: str, policy_file: str | None, workspace: str | None, agent: str | None, json_output: bool
) -> None:
    body: dict[str, Any] = {"name": name, "actor": "cli"}
    if agent:
        body["agent"] = agent
    if policy_file:
        from hermitcrab.policy import load_policy

        path = Path(policy_file)
        load_policy(path)  # a broken file is reported here, with its own path and lines
        body["policy"] = path.read_text()
    if workspace:
        body["workspace"] = str(Path(workspace).absolute())
    info = _client().request("POST", "/api/sandboxes", json=body)
    if json_output:
        print_json(info)
    else:
        print(f"created {_row(info)}")
        if info.get("best_effort"):
            print(
                f"WARNING: this sandbox runs these layers best effort only: {', '.join(info['best_effort'])}",
                file=sys.stderr,
            )


def list_all(json_output: bool) -> None:
    sandboxes = _client().request("GET", "/api/sandboxes")["sandboxes"]
    if json_output:
        print_json({"sandboxes": sandboxes})
        return
    if not sandboxes:
        print("No sandboxes. Create one with `hermitcrab sandbox create NAME`.")
    for info in sandboxes:
        print(_row(info))


def status(name: str, json_output: bool) -> None:
    info = _client().request("GET", f"/api/sandboxes/{name}")
    if json_output:
        print_json(info)
        return
    for key, value in info.items():
        print(f"{key:<15} {value}")


def exec_command(name: str, command: list[str], cwd: str | None, timeout: float | None) -> None:
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        fail("nothing to run. usage: hermitcrab sandbox exec NAME -- COMMAND [ARGS...]")
    client = _client()
    body: dict[str, Any] = {"argv": command, "actor": "cli"}
    if cwd:
        body["cwd"] = cwd
    if timeout:
        body["timeout"] = timeout
    if not sys.stdin.isatty():
        data = sys.stdin.buffer.read()
        if data:
            body["stdin"] = base64.b64encode(data).decode()
    result = _stream(client, f"/api/sandboxes/{name}/exec", body)
    if result.get("denied"):
        fail(f"denied: {result['denied']}", 126)
    if result.get("truncated"):
        print(
            f"[output truncated; all {result['bytes_out']} bytes are in {result['output_file']}]",
            file=sys.stderr,
        )
    if result.get("killed_by"):
        print(f"[killed: the command exceeded process.{result['killed_by']}]", file=sys.stderr)
    code = result.get("exit_code")
    raise SystemExit(code if isinstance(code, int) else 1)


def _stream(client: GatewayClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {client.token}"}
    try:
        with client._http.stream("POST", path, json=body, headers=headers, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                try:
                    message = response.json()["error"]["message"]
                except (ValueError, KeyError):
                    message = response.text
                fail(message)
            for line in response.iter_lines():
                if not line:
                    continue
                item = json.loads(line)
                if "stream" in item:
                    out = sys.stdout if item["stream"] == "stdout" else sys.stderr
                    out.buffer.write(base64.b64decode(item["data"]))
                    out.flush()
                elif "result" in item:
                    return item["result"]
                elif "error" in item:
                    fail(item["error"])
    except httpx.HTTPError as exc:
        raise GatewayError(f"exec in the gateway failed: {exc}") from None
    fail("the gateway ended the stream without a result")


def destroy(name: str) -> None:
    _client().request("DELETE", f"/api/sandboxes/{name}", params={"actor": "cli"})
    print(f"destroyed {name}")


def snapshot(name: str, file: str) -> None:
    path = Path(file).absolute()
    answer = _client().request(
        "POST", f"/api/sandboxes/{name}/snapshot", json={"path": str(path), "actor": "cli"}
    )
    print(f"wrote {path} ({answer['files']} files, checksums in manifest.json)")


def restore(file: str, name: str, archive_policy: bool) -> None:
    path = Path(file).absolute()
    if not path.is_file():
        fail(f"{path}: no such file")
    body = {
        "path": str(path),
        "name": name,
        "actor": "cli",
        "policy": "archive" if archive_policy else "current",
    }
    info = _client().request("POST", "/api/sandboxes/restore", json=body)
    print(f"restored {_row(info)}")
    diff = info.get("archive_policy_diff")
    if diff and not archive_policy:
        print("The archive carries another policy, not applied (the current policy file is):")
        print(shown(diff))
        print(
            "To use the archive's policy instead: destroy this sandbox, then restore with --archive-policy."
        )
    elif diff:
        print("Under the archive's own policy, which differs from the current file:")
        print(shown(diff))


def audit(sandbox: str | None, limit: int, json_output: bool) -> None:
    params: dict[str, Any] = {"limit": limit}
    if sandbox:
        params["sandbox"] = sandbox
    entries = _client().request("GET", "/api/audit", params=params)["entries"]
    if json_output:
        print_json({"entries": entries})
        return
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["ts"]))
        what = " ".join(e["argv"]) if e["argv"] else ""
        extra = []
        if e["exit_code"] is not None:
            extra.append(f"exit={e['exit_code']}")
        if e["duration_ms"] is not None:
            extra.append(f"{e['duration_ms']:.1f}ms")
        if e["bytes_out"] is not None:
            extra.append(f"out={e['bytes_out']}B")
        for key in ("killed_by", "rule", "policy_version"):
            if e[key]:
                extra.append(f"{key}={e[key]}")
        if e["detail"]:
            extra.append(e["detail"])
        if e.get("repeats", 1) > 1:
            last = time.strftime("%H:%M:%S", time.localtime(e["last_ts"]))
            extra.append(f"(x{e['repeats']}, last at {last})")
        line = f"{when} {e['actor']:<8} {e['sandbox'] or '-':<14} {e['action']:<16} {e['outcome']:<7} {what} "
        # argv and details come from a sandbox: printed raw, they could rewrite their own line.
        print(shown(line + " ".join(extra), one_line=True).rstrip())
    if not entries:
        print("The audit log is empty.")


def audit_verify(json_output: bool) -> None:
    """Read the store itself (the SQLite file read-only): the check needs no gateway, and
    trusts none."""
    import sqlite3

    from hermitcrab.config.loader import load_config
    from hermitcrab.errors import HermitCrabError
    from hermitcrab.gateway.service import store_location
    from hermitcrab.store import chain

    paths = Paths.from_env()
    try:
        where = store_location(paths, load_config(paths.config))
        if isinstance(where, str):  # PostgreSQL
            from hermitcrab.store.pg import Connection

            with contextlib.closing(Connection(where)) as pg:
                verdict = chain.verify(pg)  # type: ignore[arg-type]
        elif not where.exists():
            fail(f"{where} does not exist: there is no audit log yet")
        else:
            with contextlib.closing(sqlite3.connect(f"file:{where}?mode=ro", uri=True)) as conn:
                verdict = chain.verify(conn)
    except HermitCrabError as exc:
        fail(str(exc))
    except sqlite3.Error as exc:
        fail(f"cannot read the audit log: {exc}. fix: start the gateway once (it migrates the store)")
    if json_output:
        print_json(verdict.to_json())
    elif verdict.ok:
        older = f" ({verdict.unchained} older entries from before the chain)" if verdict.unchained else ""
        print(f"the audit chain holds: {verdict.entries} entries{older}")
    else:
        print(f"the audit chain is BROKEN at entry {verdict.first_broken}: {verdict.reason}")
    if not verdict.ok:
        raise SystemExit(1)
