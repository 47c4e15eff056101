"""The gateway's parts, built once and passed in: store, models, agents, turns, live events."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hermitcrab import __version__
from hermitcrab.agent import Agent, Services
from hermitcrab.agent.turns import TurnRunner
from hermitcrab.approvals import Approval, Approvals
from hermitcrab.config.paths import Paths
from hermitcrab.config.schema import AgentConfig, Config
from hermitcrab.config.tls import pinned
from hermitcrab.errors import GatewayError, PolicyError, SandboxNotFound
from hermitcrab.gateway.hub import Hub
from hermitcrab.gateway.metrics import Tally
from hermitcrab.gateway.parts import build_agents, tool_entry
from hermitcrab.gateway.tracing import Traces
from hermitcrab.inference import Provider, build_provider
from hermitcrab.inference.queue import CALL_SESSION, ModelQueue, QueuedProvider
from hermitcrab.inference.router import Price, Router, Usage
from hermitcrab.store import SessionStore, Store
from hermitcrab.store.sessions import Event

if TYPE_CHECKING:
    from hermitcrab.channels.manager import Channels
    from hermitcrab.config.schema import McpServerConfig
    from hermitcrab.egress.proxy import EgressProxy
    from hermitcrab.gateway.mcp_server import McpEndpoint
    from hermitcrab.runtime import SandboxRuntime, Stream
    from hermitcrab.scheduler import Clock, Scheduler
    from hermitcrab.tools.mcp.hub import McpHub

SESSION_AGENTS_KEPT = 10_000
PUBLISHED_KEPT = 10_000

log = logging.getLogger("hermitcrab.gateway")

APPROVALS_CHANNEL = "_approvals"  # not a valid session id: no session stream can receive these
RUNTIME_DELAY_SECONDS = 0.05  # after the lifespan start-up: the server is listening by then
AUDIT_PRUNE_SECONDS = 86400.0
POLICY_POLL_SECONDS = 0.5  # where inotify is missing: a policy file change applies within this


class Gateway:
    def __init__(
        self,
        paths: Paths,
        config: Config,
        providers: dict[str, Provider] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.paths = paths
        self.config = config
        self.token = paths.read_token()
        self.hub = Hub()
        self.tally = Tally()  # counts for /metrics, as events are committed
        self.traces = Traces.from_config(config.telemetry)  # None unless an endpoint is set
        self.started_at = time.time()
        self.providers: dict[str, Provider] = providers or {
            name: build_provider(name, model) for name, model in config.models.items()
        }
        # One queue per model, shared by every agent and route that uses it.
        self.queued = {
            name: QueuedProvider(p, ModelQueue(config.models[name].concurrency))
            for name, p in self.providers.items()
        }
        self.db: Store | None = None
        self.store: SessionStore | None = None
        # What every turn borrows; the store is filled in at start.
        self.services = Services(
            store=None,
            emit=self._emit,
            runtime=self.sandbox_runtime,  # type: ignore[arg-type]
            approvals=lambda: self.approvals,
        )
        self.agents: dict[str, Agent] = build_agents(config, paths, self._route, self.agent, self.services)
        self.mcp: McpHub | None = None
        self.mcp_endpoint: McpEndpoint | None = None  # /mcp, set by the app
        if config.mcp.servers:  # their tools join the agent's once its servers run (after ready)
            from hermitcrab.tools.mcp.hub import McpHub

            self.mcp = McpHub(config.mcp.servers, self._sample)
            self.services.before_turn = self.mcp.settle
            for name, agent in self.agents.items():
                agent.extra_tools = functools.partial(self.mcp.tools, name)
        self.runtime: SandboxRuntime | None = None
        self.egress: EgressProxy | None = None
        self.approvals: Approvals | None = None
        self.runner: TurnRunner | None = None
        self._preload: list[asyncio.Task[None]] = []
        self._rerouted: dict[tuple[str, str], Agent] = {}
        self._clock = clock  # the scheduler's (a test's or the soak's); None: the system's
        self.scheduler: Scheduler | None = None
        self.channels: Channels | None = None
        self._scheduler_started: asyncio.Task[None] | None = None
        self._stopping = False
        self._session_agents: dict[str, str] = {}  # session -> its agent, the latest few
        self._published: dict[int, None] = {}  # event ids this process published, the latest
        self._feed: Any = None  # PostgreSQL's: events other processes commit
        self._heard_in_order = asyncio.Lock()

    def _emit(self, event: dict[str, Any]) -> None:
        if self._feed is not None and isinstance(event.get("id"), int):
            self._published[event["id"]] = None  # the store's feed will announce it too: once is enough
            while len(self._published) > PUBLISHED_KEPT:
                self._published.pop(next(iter(self._published)))
        self.tally.event(event)
        if self.traces is not None:
            self.traces.event(event)
        self.hub.publish(event)

    def uptime(self) -> float:
        return time.time() - self.started_at

    def _route(self, name: str, agent: AgentConfig) -> Router:
        """The agent's model, then its fallbacks; usage recorded, spend cap enforced."""
        chain = [agent.model, *[f for f in agent.fallbacks if f != agent.model]]
        models = self.config.models
        providers = [
            (self.queued[m], Price(models[m].usd_per_million_input, models[m].usd_per_million_output))
            for m in chain
        ]

        def on_usage(usage: Usage) -> None:
            self.tally.usage(usage)
            if self.db is not None:
                self.db.usage.record_soon(
                    name,
                    CALL_SESSION.get(),
                    usage.model,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    usage.latency_ms,
                    usage.cost_usd,
                )

        async def refuse() -> str | None:
            db = self.db
            if db is None:
                return None
            cap = agent.spend_cap_usd_per_day
            if cap is not None and (spent := await db.aio.usage.spent_today(name)) >= cap:
                return (
                    f"agent '{name}' has spent ${spent:.4f} today, its cap is ${cap:.4f} "
                    f"(agents.{name}.spend_cap_usd_per_day); calls resume tomorrow (UTC) "
                    "or when the cap is raised"
                )
            total_cap = self.config.routing.spend_cap_usd_per_day
            if total_cap is not None and (spent := await db.aio.usage.spent_today()) >= total_cap:
                return (
                    f"all agents together have spent ${spent:.4f} today, the daily cap is ${total_cap:.4f} "
                    "(routing.spend_cap_usd_per_day); calls resume tomorrow (UTC) or when the cap is raised"
                )
            return None

        routing = self.config.routing
        return Router(
            name,
            providers,
            rounds=routing.rounds,
            max_wait_seconds=routing.max_wait_seconds,
            on_usage=on_usage,
            refuse=refuse,
        )

    def store_location(self) -> Path | str:
        return store_location(self.paths, self.config)

    @property
    def url(self) -> str:
        scheme = "https" if self.config.gateway.tls else "http"
        return f"{scheme}://{self.config.gateway.host}:{self.config.gateway.port}"

    async def start(self) -> None:
        where = self.store_location()
        self.db = await asyncio.to_thread(Store, where)
        if isinstance(where, str):  # PostgreSQL: other processes' events join the live feed
            from hermitcrab.store.pg import EventFeed

            loop = asyncio.get_running_loop()
            self._feed = EventFeed(where, lambda s, i: loop.call_soon_threadsafe(self._heard, s, i))
        self.store = self.db.sessions
        self.services.store = self.db
        # The sandbox runtime and its egress proxy start just after the gateway answers:
        # their imports and sandbox recreation must not delay readiness. Whoever needs
        # them meanwhile waits (sandbox_runtime()).
        self._runtime_started = asyncio.Event()
        self._channels_started = asyncio.Event()
        asyncio.get_running_loop().call_later(RUNTIME_DELAY_SECONDS, self._start_runtime)
        self.runner = TurnRunner(self.services, self.agent, self.config.gateway.turn_timeout_seconds)
        # Models load after the gateway answers (health checks and the API must not wait),
        # and only those an agent routes to: a model defined but unused costs nothing.
        asyncio.get_running_loop().call_later(RUNTIME_DELAY_SECONDS, self._warm_routes)
        asyncio.get_running_loop().call_later(RUNTIME_DELAY_SECONDS, self._prune_audit)
        asyncio.get_running_loop().call_later(RUNTIME_DELAY_SECONDS, self._start_scheduler)
        asyncio.get_running_loop().call_later(RUNTIME_DELAY_SECONDS, self._start_channels)
        for message in await self.db.aio.sessions.unanswered():
            session = await self.db.aio.sessions.get_session(message.session_id)
            log.info(
                "resuming unfinished turn", extra={"session": message.session_id, "message_id": message.id}
            )
            self.runner.enqueue(message, session.agent if session else self.config.default_agent)

    def _start_runtime(self) -> None:
        from hermitcrab.approvals import Approvals
        from hermitcrab.egress.forward import InferenceRoute
        from hermitcrab.egress.secrets import SecretStore
        from hermitcrab.gateway.parts import build_runtime

        if self.db is None or self._stopping:
            return
        # The inbox of held decisions: what a previous run left pending is closed here.
        self.approvals = Approvals(
            on_change=self._approval_changed,
            on_always=self._approved_always,
            always_adds=self._always_adds,
            records=self.db.approvals,
            max_pending=self.config.gateway.max_pending_approvals,
        )
        gateway = self.config.gateway
        here = gateway.local_host
        self.runtime = build_runtime(
            self.db,
            policy_file=self.paths.policy,
            workspaces=self.paths.sandbox_workspaces,
            state_root=self.paths.sandboxes,
            approvals=self.approvals,
            secrets=SecretStore(self.paths.secrets),
            inference=InferenceRoute(
                here,
                gateway.port,
                lambda: self.token,
                gateway.max_request_bytes,
                pinned(gateway.tls_cert) if gateway.tls_cert else None,
            ),
        )
        self.egress = self.runtime.egress
        self._preload.append(asyncio.create_task(self.runtime.watch_policy_file(POLICY_POLL_SECONDS)))
        # Sandboxes come back from their records in the background, as the model loads.
        self._preload.append(asyncio.create_task(self._restore_sandboxes()))
        self._runtime_started.set()
        if self.mcp is not None:
            for name, agent in self.agents.items():
                if self.mcp.wanted(name):
                    self._start_mcp(agent)

    async def _sample(
        self, agent: str, system: str | None, messages: list[tuple[str, str]], max_tokens: int
    ) -> str:
        """An MCP server's sampling request, a person having allowed it: the agent's route."""
        from hermitcrab.inference.base import ChatMessage, ChatRequest

        chat = [ChatMessage.of("system", system)] if system else []
        chat += [
            ChatMessage.of("assistant" if role == "assistant" else "user", text) for role, text in messages
        ]
        request = ChatRequest(chat, max_tokens=max_tokens, tool_choice="none")
        return "".join([c.text async for c in self.agents[agent].provider.stream(request) if c.text])

    def _start_mcp(self, agent: Agent) -> None:
        """The agent's MCP servers, each a streamed command in the agent's own sandbox."""
        assert self.mcp is not None and self.runtime is not None
        runtime = self.runtime

        from hermitcrab.tools.mcp.door import through_door
        from hermitcrab.tools.mcp.transport import ServerOutput, sandboxed_stdio

        def connector(server: str, spec: McpServerConfig) -> Callable[[ServerOutput], Any]:
            if spec.url is not None:

                def connect(output: ServerOutput) -> Any:
                    auth = self._mcp_oauth(server, spec.url or "") if spec.oauth else None
                    return through_door(runtime, agent.sandbox, agent.workspace, agent.name, spec, auth)

                return connect

            async def open_stream() -> Stream:
                await runtime.ensure(agent.sandbox, workspace=agent.workspace, agent=agent.name)
                argv = [spec.command or "", *spec.args]
                return await runtime.stream(agent.sandbox, argv, actor=f"mcp:{server}", cwd=spec.cwd,
                                            env=spec.env or None)  # fmt: skip

            return lambda output: sandboxed_stdio(open_stream, output)

        self.mcp.start(agent.name, connector)

    def _mcp_oauth(self, server: str, url: str) -> Any:
        """The OAuth provider for a configured server: the grant `mcp login` stored, used and
        refreshed from the secrets store (read afresh at each connection)."""
        from hermitcrab.egress.secrets import SecretStore, grant_record
        from hermitcrab.tools.mcp.oauth import StoredTokens, gateway_provider

        load, save = grant_record(SecretStore(self.paths.secrets), f"mcp-{server}", url)
        return gateway_provider(server, url, StoredTokens(load, save))

    async def sandbox_runtime(self) -> SandboxRuntime:
        """The runtime, once started (a few milliseconds after the gateway answers)."""
        await self._runtime_started.wait()
        assert self.runtime is not None
        return self.runtime

    def _approval_changed(self, approval: Approval) -> None:
        self.hub.publish(
            {
                "id": None,
                "session_id": APPROVALS_CHANNEL,
                "kind": f"approval.{approval.state}",
                "reply_to": None,
                "data": approval.to_json(),
            }
        )
        log.info(
            "approval", extra={"approval": approval.id, "state": approval.state, "sandbox": approval.sandbox}
        )

    def _approved_always(self, approval: Approval) -> None:
        assert self.runtime is not None
        if approval.kind == "tool":
            self.runtime.allow_tool(
                approval.sandbox, tool_entry(approval.subject), actor=approval.decided_by or "api"
            )
            return
        self.runtime.add_network_rule(
            approval.sandbox, self._always_rule(approval), actor=approval.decided_by or "api"
        )

    def _always_adds(self, approval: Approval) -> str:
        """What `_approved_always` would write, in words, or why "always" is not offered."""
        try:
            if approval.kind == "tool":
                return f"tools.allow: {tool_entry(approval.subject)}"
            rule = self._always_rule(approval)
        except (PolicyError, SandboxNotFound) as exc:
            return f"nothing ('always' is refused: {exc})"
        fields = ", ".join(f"{k}: {v}" for k, v in rule.items() if k != "name")
        return f"network rule {rule['name']} ({fields})"

    def _always_rule(self, approval: Approval) -> dict[str, Any]:
        assert self.runtime is not None
        if "*" in approval.host:  # a rule for more than the one host a person was shown: never
            raise PolicyError(
                f"'{approval.host}' is not one host; approve it once, or write the rule yourself"
            )
        rule: dict[str, Any] = {
            "name": f"approved-{approval.host}-{approval.port}",
            "hosts": [approval.host],
            "ports": [approval.port],
            "access": "allow",
        }
        asked = next(
            (r for r in self.runtime.get(approval.sandbox).policy.network.rules if r.name == approval.rule),
            None,
        )
        if asked is not None and asked.allowed_ips:
            rule["allowed_ips"] = list(asked.allowed_ips)  # what the asking rule could reach, no more
        return rule

    async def _restore_sandboxes(self) -> None:
        assert self.runtime is not None
        restored = await self.runtime.restore_all()
        if restored:
            log.info("sandboxes recreated", extra={"sandboxes": restored})

    def _prune_audit(self) -> None:
        """Keep the audit log to gateway.audit_retention_days: now, then once a day (one
        wake-up a day is all an idle gateway spends on it)."""
        days = self.config.gateway.audit_retention_days
        if self._stopping or days is None or self.db is None:
            return
        self._preload.append(asyncio.create_task(self._prune_audit_now(days)))
        asyncio.get_running_loop().call_later(AUDIT_PRUNE_SECONDS, self._prune_audit)

    async def _prune_audit_now(self, days: float) -> None:
        assert self.db is not None
        dropped = await self.db.aio.audit.prune(time.time() - days * 86400)
        if dropped:
            log.info("audit entries past their retention dropped", extra={"dropped": dropped, "days": days})

    def _warm_routes(self) -> None:
        if self._stopping:
            return
        routed = {m for a in self.config.agents.values() for m in (a.model, *a.fallbacks)}
        for name, provider in self.providers.items():
            config = getattr(provider, "config", None)
            if name in routed and getattr(config, "preload", True):
                self._preload.append(asyncio.create_task(self._load(name, provider)))

    async def _load(self, name: str, provider: Provider) -> None:
        """Load a local model, or, for a remote one, import its SDK (on a worker thread) and
        build its client, so that the first turn does not pay for either."""
        sdk = {"openai": "openai", "anthropic": "anthropic"}.get(provider.describe().get("provider", ""))
        try:
            if sdk is not None:
                import importlib

                await asyncio.to_thread(importlib.import_module, sdk)
            await provider.start()
            log.info("model loaded", extra={"model": name, **provider.describe()})
        except Exception as exc:
            log.error("model failed to load", extra={"model": name, "error": str(exc)})

    def _start_scheduler(self) -> None:
        from hermitcrab.scheduler import Scheduler

        if self.db is None or self._stopping:
            return
        self.scheduler = Scheduler(
            self.db, self.config, self.submit, lambda name: self.agent(name).workspace, self._clock
        )
        self._scheduler_started = asyncio.create_task(self.scheduler.start())

    def _start_channels(self) -> None:
        from hermitcrab.gateway.channels_door import start_channels

        if not self._stopping:
            self.channels = start_channels(self)
        self._channels_started.set()

    async def channels_ready(self) -> Channels | None:
        """The channels, once started (a few milliseconds after the gateway answers)."""
        await self._channels_started.wait()
        return self.channels

    def _heard(self, session_id: str, event_id: int) -> None:
        """An event committed somewhere: published here unless it was ours, or nobody here
        listens to its session."""
        if event_id in self._published or not self.hub.listened(session_id) or self.db is None:
            return
        self._published[event_id] = None

        async def publish() -> None:
            assert self.db is not None
            async with self._heard_in_order:  # FIFO: published in the order they committed
                found = await self.db.aio.sessions.events(session_id, after=event_id - 1, limit=1)
                if found and found[0].id == event_id:
                    self.hub.publish(found[0].to_json())

        task = asyncio.ensure_future(publish())
        self._preload.append(task)
        task.add_done_callback(self._preload.remove)

    async def stop(self) -> None:
        self._stopping = True
        if self._feed is not None:
            await asyncio.to_thread(self._feed.close)
        if self.channels is not None:
            await self.channels.stop()
        if self._scheduler_started is not None:
            await asyncio.gather(self._scheduler_started, return_exceptions=True)
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.runner is not None:
            await self.runner.stop()
        if self.mcp is not None:
            await self.mcp.stop()
        if self.mcp_endpoint is not None:
            await self.mcp_endpoint.stop()
        for task in self._preload:
            task.cancel()
        await asyncio.gather(*self._preload, return_exceptions=True)
        if self.runtime is not None:
            await self.runtime.stop()
        if self.egress is not None:
            await self.egress.close_all()
        for provider in self.providers.values():
            await provider.close()
        if self.db is not None:
            self.db.close()
        if self.traces is not None:
            await asyncio.to_thread(self.traces.shutdown)

    def agent(self, name: str, model: str | None = None) -> Agent:
        """An agent; with `model`, the same agent on that model route (a heartbeat's
        cheaper one), built once."""
        try:
            agent = self.agents[name]
        except KeyError:
            raise GatewayError(f"no agent named '{name}'; known: {', '.join(self.agents)}") from None
        if model is None or model == agent.config.model:
            return agent
        if model not in self.config.models:
            raise GatewayError(f"no model named '{model}'; known: {', '.join(self.config.models)}")
        key = (name, model)
        if key not in self._rerouted:
            config = agent.config.model_copy(update={"model": model, "fallbacks": []})
            provider = self._route(name, config)
            self._rerouted[key] = dataclasses.replace(agent, config=config, provider=provider)
        return self._rerouted[key]

    async def submit(
        self,
        session_id: str,
        text: str,
        agent_name: str | None,
        source: str,
        source_id: str | None = None,
        **options: Any,
    ) -> Event:
        """Commit an inbound message, then queue its turn: durable before anything acts.
        A message whose `source_id` this session already has is not taken again: the
        first one's event comes back (its `duplicate` is True) and no turn starts."""
        assert self.db is not None and self.runner is not None
        sessions = self.db.aio.sessions
        agent = self._session_agents.get(session_id)
        if agent is None:  # a session's agent never changes: asked of the store once
            session = await sessions.ensure_session(session_id, agent_name or self.config.default_agent)
            agent = self._session_agents[session_id] = session.agent
            if len(self._session_agents) > SESSION_AGENTS_KEPT:
                del self._session_agents[next(iter(self._session_agents))]
        self.agent(agent)
        data = {"role": "user", "text": text, "source": source, **options}
        if source_id is not None:
            data["source_id"] = source_id
        event, new = await sessions.append_inbound(session_id, data, source_id)
        if not new:
            return dataclasses.replace(event, duplicate=True)
        self._emit(event.to_json())
        self.runner.enqueue(event, agent, fresh=True)
        return event

    def status(self) -> dict[str, Any]:
        default = self.agents[self.config.default_agent]
        return {
            "running": True,
            "pid": os.getpid(),
            "url": self.url,
            "version": __version__,
            "home": str(self.paths.home),
            "uptime_seconds": round(time.time() - self.started_at, 1),
            "model": default.config.model,
            "models": {name: p.describe() for name, p in self.queued.items()},
            "agents": {name: a.config.model for name, a in self.agents.items()},
            "default_agent": self.config.default_agent,
            "turns_running": self.runner.busy() if self.runner else 0,
            "sandboxes": self.runtime.list() if self.runtime else [],
            "policy_error": self.runtime.policy_error if self.runtime else None,
            "approvals_pending": len(self.approvals.pending()) if self.approvals else 0,
            "audit_lost": self.db.audit.lost if self.db else 0,
            "audit_error": self.db.audit.last_error if self.db else None,
            "store_writes_lost": self.db.writer.lost if self.db else 0,
            "store_error": self.db.writer.last_error if self.db else None,
            "scheduler": self.scheduler.status() if self.scheduler else None,
        }


def store_location(paths: Paths, config: Config) -> Path | str:
    """The embedded store's file, or the configured PostgreSQL URL (its password from the
    secrets store)."""
    store = config.store
    if store.url is None:
        return paths.state_db
    return postgres_url(paths, store.url, store.password_secret)


def postgres_url(paths: Paths, url: str, password_secret: str | None) -> str:
    """A PostgreSQL URL with the password from the secrets store, when one is named."""
    if password_secret is None:
        return url
    from hermitcrab.egress.secrets import SecretStore
    from hermitcrab.store.pg import with_password

    return with_password(url, SecretStore(paths.secrets).get(password_secret).value)
