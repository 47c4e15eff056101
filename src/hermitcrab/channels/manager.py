"""Every configured channel: its messages routed to sessions under the trust rules, and the
answers (replies, failures, the agent's own messages, approval prompts) sent back.

Trust:
- a direct message from a sender nobody approved gets a pairing code and nothing else: no
  model call, no session;
- the owner (approved with `--owner`) talks in the owner's session, is asked about held
  calls, and may answer them from the chat (`approve ID`, `always ID`, `deny ID`);
- a guest (approved without it), or anyone in a group (the owner too: a group's session
  holds what everyone wrote), taints the turn, and a held call in such a turn is denied at
  once: no approval, no high-risk tool, no policy change. The owner may still decide a
  held call from a group, by its id;
- in a group, the agent answers only when mentioned (`groups:` says otherwise);
- the config's allowlists (`owners:`, `allow:`) need no code, and `pairing: false` gives a
  stranger no answer at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hermitcrab.channels.base import Attachment, Door, Inbound, Service

if TYPE_CHECKING:
    from hermitcrab.config.schema import ChatChannel, WebhookChannel
    from hermitcrab.store.pairing import Pairings

log = logging.getLogger("hermitcrab.channels")

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
SESSION_UNSAFE = re.compile(r"[^A-Za-z0-9._:@-]")  # what a session id may not hold
DECISION = re.compile(r"^\s*(approve|always|deny)\s+(\S+)\s*$", re.IGNORECASE)
ANSWERS = frozenset({"reply", "turn.failed", "agent.message", "approval.asked"})
SEND_ATTEMPTS = 8  # about two minutes of trying, with backoff


@dataclass
class Running:
    name: str
    config: ChatChannel | WebhookChannel
    service: Service | None
    state: str = "starting"
    error: str | None = None
    task: asyncio.Task[None] | None = None


@dataclass
class Feed:
    """A session's live feed, and which of its messages came from which chat."""

    queue: asyncio.Queue[Any]
    closer: contextlib.ExitStack
    # message id: (channel, chat, owner, the service's id for the message)
    chats: dict[int, tuple[Running, str, bool, str]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


class Channels:
    def __init__(self, door: Door, pairing: Pairings, default_agent: str) -> None:
        self.door, self.pairing, self.default_agent = door, pairing, default_agent
        self.running: dict[str, Running] = {}
        self._feeds: dict[str, Feed] = {}

    def start(
        self,
        name: str,
        config: ChatChannel | WebhookChannel,
        service: Service | None,
        error: str | None = None,
    ) -> None:
        """Run a channel; with no service (its token is missing, say), say why instead."""
        running = Running(name, config, service)
        self.running[name] = running
        if service is None:
            running.state, running.error = "failed", error
            log.error("channel %s cannot start: %s", name, error)
            return
        running.task = asyncio.create_task(self._run(running), name=f"channel {name}")

    async def _run(self, running: Running) -> None:
        assert running.service is not None
        async for message in running.service.receive():
            try:
                await self.handle(running, message)
            except Exception as exc:  # one message's failure must not stop the channel
                log.exception("channel %s: a message could not be handled", running.name)
                running.error = f"{type(exc).__name__}: {exc}"

    async def handle(self, running: Running, message: Inbound) -> Any:
        """Route one message; returns its event in the inbox, or None when it takes none."""
        config, service = running.config, running.service
        assert service is not None
        groups = getattr(config, "groups", "never")
        if not message.direct and (groups == "never" or (groups == "mention" and not message.mentioned)):
            return None
        if config.type == "webhook":  # its signature is its whole trust: a guest's
            role: str | None = "guest"
        elif message.sender in config.owners:  # the allowlists need no pairing
            role = "owner"
        elif message.sender in config.allow:
            role = "guest"
        else:
            known = self.pairing.get(running.name, message.sender)
            role = known.role if known is not None and known.approved else None
        if message.direct and role is None:
            if config.type == "webhook" or not config.pairing:
                return None  # a stranger where pairing is off: no answer at all
            request = await asyncio.to_thread(
                self.pairing.ask, running.name, message.sender, message.sender_name
            )
            await self._deliver(
                running,
                message.chat,
                f"Hello! I answer the people my owner knows. Your pairing code is {request.code}: ask "
                f"my owner to run `hermitcrab pairing approve {request.code}`. It lasts an hour.",
            )
            return None
        owner = role == "owner"
        decision = DECISION.match(message.text)
        if owner and decision is not None:
            await self._decide(service, message, decision.group(1).lower(), decision.group(2))
            return None
        if owner and message.direct:
            session = getattr(config, "owner_session", "main")
        elif message.direct:
            session = _session_id(f"{running.name}-{message.sender}")
        else:
            session = getattr(config, "group_session", None) or _session_id(
                f"{running.name}-group-{message.chat}"
            )
        # The owner's authority holds in a direct chat only: a group's session holds what
        # everyone there wrote, so a turn in it is tainted whoever asked for it.
        trusted = owner and message.direct
        feed = self._feed(session)
        agent = config.agent or self.default_agent
        text = message.text
        for attachment in message.files:
            text += await self._keep(agent, running.name, message, attachment)
        options = {
            "sender": "owner" if trusted else f"{running.name}:{message.sender}",
            "approvals": "ask" if trusted else "deny",
        }
        event = await self.door.submit(
            session,
            text,
            agent,
            source=running.name,
            source_id=f"{running.name}:{message.chat}:{message.message_id}",
            **options,
        )
        if not getattr(event, "duplicate", False):
            feed.chats[event.id] = (running, message.chat, trusted, message.message_id)
        return event

    async def _keep(self, agent: str, channel: str, message: Inbound, attachment: Attachment) -> str:
        """Save a file that came with a message in the agent's workspace; what to tell the
        agent about it. A file from a chat is untrusted: reading it taints the turn."""
        name = SAFE_NAME.sub("_", attachment.name).strip("._")[:100] or "file"
        path = f"inbox/{channel}/{message.message_id}-{name}"
        failed = await self.door.save(agent, path, attachment.data)
        if failed:
            return f"\n[a file came with this message ({name}) but could not be saved: {failed}]"
        return f"\n[file received: /workspace/{path} ({len(attachment.data)} bytes)]"

    async def _decide(self, service: Service, message: Inbound, how: str, approval_id: str) -> None:
        try:
            approval = await self.door.decide(
                approval_id, how != "deny", how == "always", f"{message.channel}:owner"
            )
        except Exception as exc:
            await service.send(message.chat, f"Could not decide {approval_id}: {exc}")
            return
        await service.send(message.chat, f"{approval_id}: {approval.state}.")

    def _feed(self, session: str) -> Feed:
        """The session's feed, listened to before any message of ours goes in."""
        feed = self._feeds.get(session)
        if feed is None:
            closer = contextlib.ExitStack()
            queue = closer.enter_context(self.door.listen(session))
            feed = self._feeds[session] = Feed(queue, closer)
            feed.task = asyncio.create_task(self._answer(feed), name=f"channel answers {session}")
        return feed

    async def _answer(self, feed: Feed) -> None:
        while True:
            event = await feed.queue.get()
            if event is None or event.get("kind") not in ANSWERS:
                continue
            target = feed.chats.get(event.get("reply_to") or -1)
            if target is None:
                continue
            running, chat, owner, replying_to = target
            data = event.get("data") or {}
            kind = event["kind"]
            if kind == "reply":
                text = str(data.get("text") or "(an empty reply)")
            elif kind == "turn.failed":
                text = f"Sorry, that failed: {data.get('error')}"
            elif kind == "agent.message":
                text = str(data.get("text", ""))
            elif owner:  # approval.asked: only the owner is asked
                approval = data.get("approval_id")
                text = (
                    f"Held for your decision: {data.get('summary')} ({data.get('why')}). Reply "
                    f"`approve {approval}`, `always {approval}` or `deny {approval}`."
                )
            else:
                continue
            if kind in ("reply", "turn.failed"):
                feed.chats.pop(event["reply_to"], None)
            await self._deliver(running, chat, text, replying_to if kind == "reply" else None)

    async def _deliver(self, running: Running, chat: str, text: str, in_reply_to: str | None = None) -> None:
        """Send, trying again with backoff while the service is unreachable: an answer made
        during an outage goes out when it ends (in order: this session's next one waits)."""
        assert running.service is not None
        wait = 1.0
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                await running.service.send(chat, text, in_reply_to)
                return
            except Exception as exc:
                running.error = str(exc)
                if attempt == SEND_ATTEMPTS:
                    log.error("channel %s: an answer was not delivered: %s", running.name, exc)
                    return
                log.warning("channel %s: sending failed (%s); trying again in %g s", running.name, exc, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, 30.0)

    async def welcome(self, channel: str, sender: str, role: str) -> None:
        """Tell a sender the owner approved them (a direct chat's id is the sender's)."""
        running = self.running.get(channel)
        if running is not None and running.service is not None:
            with contextlib.suppress(Exception):
                await running.service.send(sender, f"You are paired ({role}). Say hello!")

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for name, running in self.running.items():
            link = getattr(running.service, "link", None)
            state = link.state if link is not None and running.state != "failed" else running.state
            error = running.error or (link.last_error if link is not None else None)
            out.append({"name": name, "type": running.config.type, "state": state, "error": error,
                        "bot": getattr(running.service, "username", None)})  # fmt: skip
        return out

    async def stop(self) -> None:
        tasks = [r.task for r in self.running.values() if r.task] + [
            f.task for f in self._feeds.values() if f.task
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for feed in self._feeds.values():
            feed.closer.close()
        for running in self.running.values():
            if running.service is not None:
                with contextlib.suppress(Exception):
                    await running.service.close()


def _session_id(name: str) -> str:
    """A service's ids made a session id (Matrix rooms start with "!", for one)."""
    return SESSION_UNSAFE.sub("_", name)[:128]
