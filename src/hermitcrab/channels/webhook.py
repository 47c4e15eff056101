"""Signed webhooks: any program may post a message to `POST /hooks/NAME`, signed with a key
both sides hold (HMAC-SHA256 over "TIMESTAMP.BODY", sent as `X-HermitCrab-Signature:
sha256=HEX` beside `X-HermitCrab-Timestamp`). A signature that does not match, a timestamp
outside the replay window, or a request seen before is refused. The signature is the whole
of the trust: a webhook's turns are a guest's (tainted; a held call is denied at once).
Answers go to `reply_url`, signed the same way, when one is configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx

from hermitcrab.channels.base import Inbound, Link

if TYPE_CHECKING:
    from hermitcrab.config.schema import WebhookChannel

REPLAY_WINDOW_S = 300.0  # a timestamp further from now than this is refused
SIGNATURE = "x-hermitcrab-signature"
TIMESTAMP = "x-hermitcrab-timestamp"
MAX_SEEN = 10_000


def sign(key: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(key.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify(key: str, timestamp: str, body: bytes, signature: str, now: float, seen: set[str]) -> str | None:
    """Why a request is refused, or None. `seen` holds the signatures taken in the window."""
    try:
        stamp = float(timestamp)
    except ValueError:
        return "the timestamp is not a number of seconds"
    if abs(now - stamp) > REPLAY_WINDOW_S:
        return f"the timestamp is more than {REPLAY_WINDOW_S:g} s from now (a replay, or a clock to fix)"
    if not hmac.compare_digest(signature.encode(), sign(key, timestamp, body).encode()):
        return "the signature does not match this body and timestamp under the channel's key"
    if signature in seen:
        return "replayed: this very request was taken already"
    if len(seen) >= MAX_SEEN:
        seen.clear()  # past the window they would be refused for their timestamp anyway
    seen.add(signature)
    return None


class HookRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Webhook:
    limit = 64 * 1024

    def __init__(self, name: str, config: WebhookChannel, key: str) -> None:
        self.name, self.config, self._key = name, config, key
        self._seen: set[str] = set()
        self._http = httpx.AsyncClient(timeout=30, trust_env=False)
        self.link, self.username = Link(name), None
        self.link.state = "listening"

    def take(self, timestamp: str, signature: str, body: bytes) -> Inbound:
        """A posted request, checked and queued; raises HookRefused with the status to answer."""
        refused = verify(self._key, timestamp, body, signature, time.time(), self._seen)
        if refused is not None:
            raise HookRefused(409 if refused.startswith("replayed") else 401, refused)
        try:
            payload = json.loads(body)
        except ValueError:
            raise HookRefused(400, "the body is not JSON") from None
        text, sender = payload.get("text") if isinstance(payload, dict) else None, None
        if isinstance(payload, dict):
            sender = payload.get("sender", "webhook")
        if not isinstance(text, str) or not text.strip() or not isinstance(sender, str) or not sender:
            raise HookRefused(400, 'send {"text": "...", "sender": "who", "id": "its id, for retries"}')
        message_id = str(payload.get("id") or signature)
        return Inbound(self.name, sender[:100], sender[:100], sender[:100], text, message_id, direct=True)

    async def receive(self) -> AsyncIterator[Inbound]:
        """Nothing to poll: the gateway's route hands each request to the channels itself."""
        await asyncio.Event().wait()
        yield Inbound("", "", "", "", "", "", True)  # never reached: it only makes this a generator

    async def send(self, chat: str, text: str, in_reply_to: str | None = None) -> None:
        if not self.config.reply_url:
            return  # answers stay in the session, for the API to read
        body = json.dumps({"chat": chat, "text": text, "in_reply_to": in_reply_to}).encode()
        stamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            TIMESTAMP: stamp,
            SIGNATURE: sign(self._key, stamp, body),
        }
        response = await self._http.post(self.config.reply_url, content=body, headers=headers)
        if response.status_code >= 300:
            raise RuntimeError(f"{self.config.reply_url} answered {response.status_code}")

    async def close(self) -> None:
        await self._http.aclose()
