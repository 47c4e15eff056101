"""`hermitcrab chat`: the terminal UI (Textual). The conversation, with replies streaming and
each tool call and its result; the requests held for a person, decided with a key; the
sessions, switched between; the model and today's spend at the foot.

It speaks to the running gateway as every client does: its HTTP API, and the WebSockets of
the session and of the approvals. `hermitcrab chat --plain` keeps the line mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, ClassVar

import httpx
from rich.markup import escape
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Input, Label, ListItem, ListView, Static

from hermitcrab.cli.client import GatewayClient

STATUS_EVERY_S = 5.0
RECONNECT_S = 2.0


class Line(Static):
    """One line of the conversation."""


class ApprovalItem(ListItem):
    def __init__(self, approval: dict[str, Any]) -> None:
        self.approval = approval
        if approval["kind"] == "tool":
            text = f"{approval.get('agent')} wants {approval['summary']}: {approval.get('why')}"
        else:
            text = (
                f"{approval.get('sandbox')} asks to reach {approval['summary']} (rule {approval.get('rule')})"
            )
        if approval.get("always_adds"):
            text += f"\n  always adds: {approval['always_adds']}"
        super().__init__(Label(escape(text)))


class SessionItem(ListItem):
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(Label(escape(session_id)))


class ChatApp(App[None]):
    TITLE = "HermitCrab"
    CSS = """
    #sessions { width: 24; border-right: solid $panel; }
    #approvals { height: auto; max-height: 12; border: round $warning; display: none; }
    #approvals.waiting { display: block; }
    #log { height: 1fr; padding: 0 1; }
    .user { color: $accent; margin-top: 1; }
    .reply { margin-bottom: 1; }
    .tool { color: $text-muted; }
    .error { color: $error; }
    #foot { height: 1; padding: 0 1; background: $panel; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "focus_approvals", "Approvals"),
        Binding("f3", "focus_sessions", "Sessions"),
        Binding("ctrl+n", "new_session", "New session"),
        Binding("y", "decide('once')", "Allow once", show=False),
        Binding("a", "decide('always')", "Always", show=False),
        Binding("n", "decide('deny')", "Deny", show=False),
        Binding("ctrl+q", "quit", "Quit"),
    ]

    def __init__(self, client: GatewayClient, session: str, agent: str | None) -> None:
        super().__init__()
        self.base_url, self.token = client.base_url, client.token
        self.session, self.agent = session, agent
        # Only this header on the WebSockets: httpx's own (Connection: keep-alive) would break
        # their upgrade.
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=self.auth, timeout=30, trust_env=False)
        self.live: Line | None = None  # the reply being written
        self.live_text = ""
        self.pending: dict[str, dict[str, Any]] = {}
        self._session_task: asyncio.Task[None] | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal():
            yield ListView(id="sessions")
            with Vertical():
                yield ListView(id="approvals")
                yield VerticalScroll(id="log")
                yield Input(placeholder="Message (Enter sends)", id="input")
        yield Static("", id="foot")
        yield Footer()

    async def on_mount(self) -> None:
        self.query_one(
            "#approvals", ListView
        ).border_title = "Held for your decision: y once, a always, n deny"
        self.query_one("#input", Input).focus()
        self.watch_approvals()
        self.refresh_status()
        await self.open_session(self.session)

    async def on_unmount(self) -> None:
        await self.http.aclose()

    # --- the conversation

    async def open_session(self, session: str) -> None:
        self.session = session
        self.sub_title = session
        self.live, self.live_text = None, ""
        await self.query_one("#log", VerticalScroll).remove_children()
        if self._session_task is not None:
            self._session_task.cancel()
        self._session_task = asyncio.create_task(self._follow(session))
        await self.load_sessions()

    async def _follow(self, session: str) -> None:
        """The session's events, the log replayed first, then live; reconnects when dropped."""
        from websockets.asyncio.client import connect

        after = 0
        url = self.base_url.replace("http", "ws", 1) + f"/api/sessions/{session}/ws"
        while True:
            try:
                async with connect(f"{url}?after={after}", additional_headers=self.auth) as ws:
                    async for raw in ws:
                        event = json.loads(raw)
                        if event.get("id"):
                            after = max(after, int(event["id"]))
                        self.show(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                await asyncio.sleep(RECONNECT_S)

    def show(self, event: dict[str, Any]) -> None:
        kind, data = event["kind"], event.get("data") or {}
        if kind == "message":
            self._line(f"you: {data.get('text', '')}", "user")
            self.live, self.live_text = None, ""
        elif kind == "token":
            if self.live is None:
                self.live, self.live_text = self._line("", "reply"), ""
            self.live_text += data.get("text", "")
            self.live.update(escape(self.live_text.lstrip()))
        elif kind == "model.response" and any(p.get("kind") == "tool_call" for p in data.get("parts", [])):
            self.live, self.live_text = None, ""
        elif kind == "tool.call":
            self._line(f"→ {data.get('name')} {_short(data.get('arguments', ''))}", "tool")
        elif kind == "tool.result":
            mark = "✗" if data.get("error") else "✓"
            self._line(
                f"  {mark} {_short(data.get('content', ''))}", "tool error" if data.get("error") else "tool"
            )
        elif kind == "approval.asked":
            self._line(f"  held for your decision: {data.get('summary')} (F2)", "tool")
        elif kind == "reply":
            text = str(data.get("text", ""))
            if self.live is not None:
                self.live.update(escape(text))
            else:
                self._line(text, "reply")
            self.live, self.live_text = None, ""
        elif kind == "turn.failed":
            self._line(f"error: {data.get('error')}", "error")
            self.live, self.live_text = None, ""
        elif kind == "agent.message":
            self._line(str(data.get("text", "")), "reply")

    def _line(self, text: str, classes: str) -> Line:
        line = Line(escape(text), classes=classes)
        log = self.query_one("#log", VerticalScroll)
        log.mount(line)
        log.scroll_end(animate=False)
        return line

    @on(Input.Submitted, "#input")
    async def send(self, submitted: Input.Submitted) -> None:
        text = submitted.value.strip()
        submitted.input.value = ""
        if not text:
            return
        body: dict[str, Any] = {"text": text, "approvals": "ask"}
        if self.agent:
            body["agent"] = self.agent
        try:
            response = await self.http.post(f"/api/sessions/{self.session}/messages", json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            self._line(f"error: could not send: {exc}", "error")
        await self.load_sessions()

    # --- sessions

    async def load_sessions(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            sessions = (await self.http.get("/api/sessions")).json()["sessions"]
            names = [s["id"] for s in sessions]
            if self.session not in names:
                names.insert(0, self.session)
            listing = self.query_one("#sessions", ListView)
            await listing.clear()
            await listing.extend([SessionItem(name) for name in names])
            listing.index = names.index(self.session)

    @on(ListView.Selected, "#sessions")
    async def switch(self, selected: ListView.Selected) -> None:
        item = selected.item
        if isinstance(item, SessionItem) and item.session_id != self.session:
            await self.open_session(item.session_id)
            self.query_one("#input", Input).focus()

    async def action_new_session(self) -> None:
        import time

        await self.open_session(f"tui-{int(time.time())}")
        self.query_one("#input", Input).focus()

    def action_focus_sessions(self) -> None:
        self.query_one("#sessions", ListView).focus()

    # --- approvals

    @work(exclusive=True, group="approvals")
    async def watch_approvals(self) -> None:
        from websockets.asyncio.client import connect

        url = self.base_url.replace("http", "ws", 1) + "/api/approvals/ws"
        while True:
            try:
                async with connect(url, additional_headers=self.auth) as ws:
                    self.pending.clear()
                    async for raw in ws:
                        message = json.loads(raw)
                        data = message["data"]
                        if message["kind"] == "approval.pending":
                            self.pending[data["id"]] = data
                        else:
                            self.pending.pop(data["id"], None)
                        await self._draw_approvals()
            except Exception:
                await asyncio.sleep(RECONNECT_S)

    async def _draw_approvals(self) -> None:
        panel = self.query_one("#approvals", ListView)
        await panel.clear()
        await panel.extend([ApprovalItem(a) for a in self.pending.values()])
        panel.set_class(bool(self.pending), "waiting")
        if self.pending and panel.index is None:
            panel.index = 0

    def action_focus_approvals(self) -> None:
        if self.pending:
            self.query_one("#approvals", ListView).focus()

    async def action_decide(self, how: str) -> None:
        panel = self.query_one("#approvals", ListView)
        if not panel.has_focus or not isinstance(panel.highlighted_child, ApprovalItem):
            return
        approval = panel.highlighted_child.approval
        body = {"decision": "deny" if how == "deny" else "approve", "always": how == "always", "actor": "tui"}
        try:
            response = await self.http.post(f"/api/approvals/{approval['id']}", json=body)
            if response.status_code >= 400:
                self._line(f"error: {response.json()['error']['message']}", "error")
        except httpx.HTTPError as exc:
            self._line(f"error: could not decide: {exc}", "error")
        self.query_one("#input", Input).focus()

    # --- the foot: model and spend

    @work(exclusive=True, group="status")
    async def refresh_status(self) -> None:
        while True:
            with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
                status = (await self.http.get("/api/status")).json()
                usage = (await self.http.get("/api/usage", params={"by": "day"})).json()
                spent = usage["today"]["total_usd"]
                cap = usage["today"].get("total_cap_usd")
                money = f"${spent:.4f} today" + (f" of ${cap:g}" if cap else "")
                self.query_one("#foot", Static).update(
                    escape(f"model {status.get('model')} · {money} · session {self.session}")
                )
            await asyncio.sleep(STATUS_EVERY_S)


def _short(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run(client: GatewayClient, session: str, agent: str | None) -> None:
    ChatApp(client, session, agent).run()
