"""`hermitcrab approvals`, `approve ID [--always]`, `deny ID`."""

from __future__ import annotations

import time

from hermitcrab.cli.client import GatewayClient
from hermitcrab.cli.output import fail, print_json, shown
from hermitcrab.config.paths import Paths


def _client() -> GatewayClient:
    client = GatewayClient(Paths.from_env())
    if client.health() is None:
        fail(f"the gateway at {client.base_url} is not running. fix: `hermitcrab up`")
    return client


def list_approvals(all_: bool, json_output: bool) -> None:
    items = _client().request("GET", "/api/approvals", params={"all": "1"} if all_ else {})["approvals"]
    if json_output:
        print_json({"approvals": items})
        return
    if not items:
        print("Nothing is waiting for approval.")
    now = time.time()
    for a in items:
        left = f"{max(a['expires_at'] - now, 0):.0f}s left" if a["state"] == "pending" else a["state"]
        print(f"{a['id']:<14} {a['kind']:<8} {a['sandbox'] or '-':<16} {shown(a['summary'], True)}  ({left})")
        if a["kind"] == "tool":
            taint = f"; read untrusted content from {', '.join(a['taint'])}" if a.get("taint") else ""
            print(f"{'':<14} why: {shown(a['why'] + taint, True)}")
            if a.get("details"):
                print(f"{'':<14} {shown(a['details'], True)}")
        if a["state"] == "pending" and a.get("always_adds"):
            print(f"{'':<14} --always adds: {shown(a['always_adds'], True)}")
    if any(a["state"] == "pending" for a in items):
        print("Decide with `hermitcrab approve ID [--always]` or `hermitcrab deny ID`.")


def decide(approval_id: str, allow: bool, always: bool) -> None:
    body = {"decision": "approve" if allow else "deny", "always": always, "actor": "cli"}
    approval = _client().request("POST", f"/api/approvals/{approval_id}", json=body)
    what = f"{shown(approval['summary'], True)} for sandbox {approval['sandbox']}"
    if not allow:
        print(f"denied {what}")
    elif approval["always"] and approval["kind"] == "tool":
        print(f"approved {what}, and added it to tools.allow (a turn that read untrusted content still asks)")
    elif approval["always"]:
        print(f"approved {what}, and wrote a rule that allows it from now on")
    else:
        print(f"approved {what}, this once")
