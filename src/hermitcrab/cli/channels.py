"""`hermitcrab channels list|status` and `hermitcrab pairing list|approve|revoke`."""

from __future__ import annotations

import time

from hermitcrab.cli.approvals import _client
from hermitcrab.cli.output import print_json, shown


def channels(json_output: bool) -> None:
    found = _client().request("GET", "/api/channels")["channels"]
    if json_output:
        print_json({"channels": found})
        return
    if not found:
        print("No channels are configured (channels: in hermitcrab.yaml).")
    for channel in found:
        bot = f" as @{channel['bot']}" if channel.get("bot") else ""
        print(f"{channel['name']} ({channel['type']}{bot}): {channel['state']}")
        if channel.get("error"):
            print(f"  last error: {shown(channel['error'], True)}")


def pairing(json_output: bool) -> None:
    senders = _client().request("GET", "/api/pairing")["senders"]
    if json_output:
        print_json({"senders": senders})
        return
    now = time.time()
    waiting = [s for s in senders if s["state"] == "pending" and s["expires_at"] > now]
    paired = [s for s in senders if s["state"] == "approved"]
    if not waiting and not paired:
        print("Nobody waits, and nobody is paired. A stranger who writes to a channel gets a code.")
    for s in waiting:
        left = int((s["expires_at"] - now) / 60)
        print(
            f"{s['code']}  {s['channel']} {s['sender']} ({shown(s['name'], True)}), waiting, {left} min left"
        )
    for s in paired:
        print(f"{'':<6}  {s['channel']} {s['sender']} ({shown(s['name'], True)}): {s['role']}")
    if waiting:
        print("Approve with `hermitcrab pairing approve CODE` (add --owner for yourself on a new channel).")


def approve(code: str, owner: bool) -> None:
    role = "owner" if owner else "guest"
    sender = _client().request(
        "POST", "/api/pairing/approve", json={"code": code, "role": role, "actor": "cli"}
    )
    print(f"paired {sender['channel']} {sender['sender']} ({shown(sender['name'], True)}) as {role}")


def revoke(channel: str, sender: str) -> None:
    _client().request(
        "POST", "/api/pairing/revoke", json={"channel": channel, "sender": sender, "actor": "cli"}
    )
    print(f"revoked {channel} {sender}: a message from them gets a new pairing code")
