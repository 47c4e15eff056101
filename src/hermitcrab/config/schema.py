"""The shape of hermitcrab.yaml. Unknown keys are errors: a typo must never be ignored."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GatewayConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(18790, ge=1, le=65535)
    # Binding anything but loopback exposes the agent to the network; it must be asked for.
    allow_non_loopback: bool = False
    # Names a browser may reach the gateway by besides loopback's and the bound address (a LAN
    # or Tailscale name); any other Host is refused, so a rebound DNS name reaches nothing.
    allowed_hosts: list[str] = Field(default_factory=list)
    max_message_bytes: int = Field(256 * 1024, ge=1, le=16 * 1024 * 1024)
    max_request_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    turn_timeout_seconds: float = Field(600.0, gt=0)
    startup_timeout_seconds: float = Field(30.0, gt=0)
    # Questions one sandbox may have waiting for a person at once; more are denied at once.
    max_pending_approvals: int = Field(32, ge=1, le=10000)
    shutdown_timeout_seconds: float = Field(10.0, gt=0)
    # MemoryMax of the service unit `hermitcrab service install` writes (sandboxes included).
    service_memory_max_mb: int | None = Field(None, ge=64)
    # Audit entries older than this are dropped (at start, then daily); None keeps them all.
    audit_retention_days: float | None = Field(90.0, gt=0)
    # TLS of its own (PEM files), for a bind off loopback without a proxy in front: both or
    # neither. Local clients (the CLI, sandboxes' inference.local) pin this certificate.
    tls_cert: str | None = None
    tls_key: str | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewayConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both (PEM files) or neither")
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def local_host(self) -> str:
        """Where a client on this machine reaches the gateway: a wildcard bind is loopback."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def local_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.local_host}:{self.port}"


class _ModelBase(StrictModel):
    max_tokens: int = Field(256, ge=1, le=32768)
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    # Price table, in US dollars per million tokens; usage and spend caps use it.
    usd_per_million_input: float = Field(0.0, ge=0)
    usd_per_million_output: float = Field(0.0, ge=0)
    # Calls at once; more wait in a queue (a person first, then fair turns between sessions).
    concurrency: int = Field(1, ge=1, le=256)


class LlamaCppModel(_ModelBase):
    """A GGUF model run in-process by llama.cpp; by default the bundled SmolLM2-135M."""

    provider: Literal["llama_cpp"] = "llama_cpp"
    path: str | None = None
    context_tokens: int = Field(2048, ge=256, le=131072)
    threads: int | None = Field(None, ge=1, le=256)
    # Loading can take seconds; the gateway answers health checks before it is done.
    preload: bool = True


class OpenAIModel(_ModelBase):
    """Any OpenAI-compatible server: vLLM, Ollama, llama-server, NIM, OpenAI itself."""

    provider: Literal["openai"]
    concurrency: int = Field(4, ge=1, le=256)  # remote servers batch; tune to their limits
    base_url: str
    model: str
    api_key_env: str | None = None
    request_timeout_seconds: float = Field(120.0, gt=0)


class AnthropicModel(_ModelBase):
    """Anthropic's Messages API (or a server that speaks it)."""

    provider: Literal["anthropic"]
    concurrency: int = Field(4, ge=1, le=256)
    model: str
    base_url: str = "https://api.anthropic.com"
    api_key_env: str = "ANTHROPIC_API_KEY"
    request_timeout_seconds: float = Field(120.0, gt=0)


class ScriptedCall(StrictModel):
    name: str
    arguments: dict[str, object] = Field(default_factory=dict)


class ScriptedReply(StrictModel):
    """A scripted model's answer: some text, some tool calls, or both. With `after`, it is
    given only to a request that ends with a person's message ("user") or a tool's result
    ("tool"), so that concurrent sessions each get "act, then answer". `{last_user}` in its
    text or in a call's string arguments is the request's last user message, as it is."""

    text: str = ""
    calls: list[ScriptedCall] = Field(default_factory=list)
    after: Literal["user", "tool"] | None = None


class ScriptedModel(_ModelBase):
    """Replies from a list, in turn (cycling); for tests and demos, never for real work."""

    provider: Literal["scripted"]
    concurrency: int = Field(4, ge=1, le=256)
    replies: list[str | ScriptedReply] = Field(default_factory=lambda: ["Hello from the scripted model."])
    delay_seconds: float = Field(0.0, ge=0.0)


ModelConfig = Annotated[
    LlamaCppModel | OpenAIModel | AnthropicModel | ScriptedModel, Field(discriminator="provider")
]


class CompactionConfig(StrictModel):
    # The model's context window, in tokens; None: the model's own (llama_cpp's
    # context_tokens), else 32,768.
    context_tokens: int | None = Field(None, ge=512, le=10_000_000)
    # Past this share of the window the older exchanges are summarised into a note.
    at_share: float = Field(0.75, gt=0.1, le=0.95)
    keep_exchanges: int = Field(4, ge=1, le=100)  # the most recent, kept word for word


class AgentConfig(StrictModel):
    model: str = "embedded"
    # Tried in order when the model is rate-limited, failing, unreachable or too slow.
    fallbacks: list[str] = Field(default_factory=list)
    workspace: str | None = None
    max_history_messages: int = Field(20, ge=0, le=10000)
    spend_cap_usd_per_day: float | None = Field(None, ge=0)
    # The tools offered to the model (the policy still decides each call); None: every built-in.
    tools: list[str] | None = None
    # Model calls in one turn that may ask for tools; past it the model must answer.
    max_tool_steps: int = Field(25, ge=1, le=1000)
    tool_timeout_seconds: float = Field(300.0, gt=0)  # one call, its approval wait included
    # A longer tool result is cut; the whole text goes to a workspace file the model is shown.
    max_tool_result_chars: int = Field(16000, ge=200, le=10_000_000)
    heartbeat: HeartbeatConfig | None = None
    compaction: CompactionConfig = Field(default_factory=CompactionConfig)


class HeartbeatConfig(StrictModel):
    """A recurring look at the agent's HEARTBEAT.md (in its workspace): an empty or
    comment-only file costs nothing, not even a model call."""

    every_minutes: float = Field(30.0, gt=0)
    model: str | None = None  # a cheaper model route for these turns; None: the agent's own
    file: str = "HEARTBEAT.md"


class SchedulerConfig(StrictModel):
    # The zone cron expressions are read in unless a job names its own; None: this machine's.
    timezone: str | None = None
    # Jobs at the top of an hour start up to this much later (the same offset each time for
    # a job), so that many of them do not all wake the model at :00.
    top_of_hour_jitter_seconds: float = Field(120.0, ge=0, le=3600)
    # Where a job's turns go: a session of its own ("job-ID"), or the session it was made in.
    job_sessions: Literal["own", "main"] = "own"
    # The most runs catch-up "all" makes for slots missed while the gateway was down.
    catch_up_max: int = Field(10, ge=1, le=1000)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}; use an IANA name: Europe/Paris") from None
        return value


class RoutingConfig(StrictModel):
    max_wait_seconds: float = Field(30.0, ge=0)  # the longest Retry-After we honour
    rounds: int = Field(2, ge=1, le=10)  # passes over the route before giving up
    # What all agents together may spend in a day (UTC), on top of each agent's own cap.
    spend_cap_usd_per_day: float | None = Field(None, ge=0)


class McpToolFilter(StrictModel):
    allow: list[str] | None = None  # the server's tools offered (by their own names); None: all
    deny: list[str] = Field(default_factory=list)


class McpServerConfig(StrictModel):
    """An MCP server whose tools the agents are offered, as `NAME__tool`. A stdio server
    (`command`) runs inside each agent's sandbox, under its policy: it reads only what the
    policy lets it and reaches the network only through the door."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)  # plain settings: secrets never enter a sandbox
    cwd: str | None = None  # inside the sandbox; default the workspace
    url: str | None = None  # streamable HTTP, reached through the agent's sandbox's egress door
    headers: dict[str, str] = Field(default_factory=dict)  # plain ones; credentials: a network rule's secret
    # OAuth 2.1: a person signs in once (`hermitcrab mcp login NAME`); the tokens stay in the
    # secrets store as `mcp-NAME`, and the gateway refreshes them.
    oauth: bool = False
    tools: McpToolFilter = Field(default_factory=McpToolFilter)
    # Every tool of this server at this risk, whatever its annotations say.
    risk: Literal["read", "write", "exec", "network", "external"] | None = None
    timeout_seconds: float = Field(60.0, gt=0, le=3600)
    agents: list[str] | None = None  # the agents offered it; None: every agent

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.url is None) == (not self.command):
            raise ValueError(
                "a server has either a command (stdio, run in the sandbox) or a url (streamable HTTP), "
                "not both and not neither"
            )
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url {self.url!r} is not an http(s) URL")
        if self.oauth and self.url is None:
            raise ValueError("oauth is for a server reached by url; a stdio server signs in to nothing")
        return self


class McpConfig(StrictModel):
    servers: dict[str, McpServerConfig] = Field(default_factory=dict)

    @field_validator("servers")
    @classmethod
    def _names(cls, servers: dict[str, McpServerConfig]) -> dict[str, McpServerConfig]:
        for name in servers:
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,23}", name):
                raise ValueError(
                    f"server name {name!r}: use up to 24 lowercase letters, digits and '-' "
                    "(its tools are offered as NAME__tool)"
                )
        return servers


class TelemetryConfig(StrictModel):
    # OTLP over HTTP (an OpenTelemetry Collector, Jaeger, Tempo...): turns, model calls and
    # tool calls go there as spans; needs `pip install 'hermitcrab[otel]'`. None: no traces.
    otlp_endpoint: str | None = None
    service_name: str = "hermitcrab"

    @field_validator("otlp_endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL; the OTLP/HTTP port: http://127.0.0.1:4318")
        return value


class ChatChannel(StrictModel):
    """What every chat service's channel shares: who may talk, and where it goes."""

    agent: str | None = None  # None: the default agent
    # Where the owner's direct messages go; a guest's go to CHANNEL-SENDER, a group's to
    # CHANNEL-group-CHAT (or all groups to `group_session` when it is set).
    owner_session: str = "main"
    group_session: str | None = None
    # In a group, answer when mentioned (@the_bot), to every message, or never.
    groups: Literal["mention", "always", "never"] = "mention"
    # Allowlists, by the service's user id: these need no pairing code. Owners act with the
    # owner's authority; `allow` are guests.
    owners: list[str] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)
    # A stranger's direct message gets a pairing code; false: no answer at all.
    pairing: bool = True


class TelegramChannel(ChatChannel):
    """A Telegram bot (Bot API, long polling). Its token is a secret (`hermitcrab secrets set
    NAME`), named here, never written in this file."""

    type: Literal["telegram"]
    token_secret: str = "telegram"
    api_url: str = "https://api.telegram.org"  # a Bot API server of your own, or a test's
    poll_seconds: int = Field(25, ge=1, le=50)


class SlackChannel(ChatChannel):
    """A Slack app in Socket Mode (no public address needed): its bot token (xoxb-) and its
    app-level token (xapp-, with connections:write) are secrets, named here."""

    type: Literal["slack"]
    token_secret: str = "slack"
    app_token_secret: str = "slack-app"
    api_url: str = "https://slack.com/api/"


class DiscordChannel(ChatChannel):
    """A Discord bot, on the gateway WebSocket (MESSAGE_CONTENT intent on); its token is a
    secret, named here."""

    type: Literal["discord"]
    token_secret: str = "discord"
    api_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/"


class MatrixChannel(ChatChannel):
    """A Matrix account, through the client-server API (/sync long polling); its access token
    is a secret, named here. Rooms with two members are direct chats."""

    type: Literal["matrix"]
    homeserver: str
    user_id: str  # @bot:example.org
    token_secret: str = "matrix"
    poll_seconds: int = Field(25, ge=1, le=50)

    @field_validator("homeserver")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class EmailChannel(ChatChannel):
    """A mailbox: mail comes in over IMAP (IDLE), answers go out over SMTP. Every mail is a
    direct message from its sender's address; the password is a secret, named here."""

    type: Literal["email"]
    address: str  # the agent's own address: answers come from it
    imap_host: str
    imap_port: int = 993
    smtp_host: str
    smtp_port: int = 465
    # tls: TLS from the start (993, 465); starttls: upgraded (143, 587); plain: loopback only.
    security: Literal["tls", "starttls", "plain"] = "tls"
    username: str | None = None  # None: the address
    password_secret: str = "email"
    folder: str = "INBOX"
    # From: is easy to forge. authenticated: a mail counts as its sender's only when the
    # receiving server's Authentication-Results says DMARC passed; any: trust From as it is.
    trust: Literal["authenticated", "any"] = "authenticated"
    groups: Literal["mention", "always", "never"] = "never"  # mail has no groups

    @model_validator(mode="after")
    def _plain_on_loopback_only(self) -> EmailChannel:
        loopback = {"127.0.0.1", "::1", "localhost"}
        if self.security == "plain" and not {self.imap_host, self.smtp_host} <= loopback:
            raise ValueError("security: plain sends the password in the clear: loopback hosts only")
        return self


class WebhookChannel(StrictModel):
    """Messages posted to POST /hooks/NAME, signed with HMAC-SHA256 under a key in the secrets
    store; answers posted to `reply_url`, signed the same way (None: they stay in the session)."""

    type: Literal["webhook"]
    secret: str  # the signing key's name in the secrets store
    reply_url: str | None = None
    agent: str | None = None

    @field_validator("reply_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


ChannelConfig = Annotated[
    TelegramChannel | SlackChannel | DiscordChannel | MatrixChannel | EmailChannel | WebhookChannel,
    Field(discriminator="type"),
]


class StoreConfig(StrictModel):
    """Where the store lives: the embedded SQLite file in the home (url None), or PostgreSQL."""

    url: str | None = None  # postgresql://USER@HOST:PORT/DATABASE, no password in it
    password_secret: str | None = None  # the password's name in the secrets store

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{value!r} is not a PostgreSQL URL: postgresql://USER@HOST:PORT/DATABASE")
        if "@" in value and ":" in value.split("://", 1)[1].split("@", 1)[0]:
            raise ValueError("a password does not go in this file: store.password_secret names it")
        return value


class ClusterConfig(StrictModel):
    """A Ray cluster (`hermitcrab cluster up|status|down`): an existing one's address, or a
    head started here on `port`. `labels` become the node's custom resources (placement)."""

    address: str | None = None  # HOST:PORT of an existing cluster's head
    port: int = Field(6380, ge=1, le=65535)
    labels: list[str] = Field(default_factory=list)


class Config(StrictModel):
    version: Literal[1]
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    models: dict[str, ModelConfig] = Field(default_factory=lambda: {"embedded": LlamaCppModel()})
    agents: dict[str, AgentConfig] = Field(default_factory=lambda: {"main": AgentConfig()})
    default_agent: str = "main"
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    mcp: McpConfig = Field(default_factory=McpConfig)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    store: StoreConfig = Field(default_factory=StoreConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    def reference_problems(self) -> list[tuple[tuple[str | int, ...], str, str]]:
        """Cross-references pydantic cannot check: (location, problem, fix)."""
        problems: list[tuple[tuple[str | int, ...], str, str]] = []
        for server, spec in self.mcp.servers.items():
            for index, agent_name in enumerate(spec.agents or []):
                if agent_name not in self.agents:
                    problems.append(
                        (
                            ("mcp", "servers", server, "agents", index),
                            f"MCP server '{server}' is offered to agent '{agent_name}', which is not defined",
                            f"use one of the agents under 'agents:' ({', '.join(sorted(self.agents))})",
                        )
                    )
        for name, agent in self.agents.items():
            for index, fallback in enumerate(agent.fallbacks):
                if fallback not in self.models:
                    problems.append(
                        (
                            ("agents", name, "fallbacks", index),
                            f"agent '{name}' falls back to model '{fallback}', which is not defined",
                            f"use one of the models under 'models:' ({', '.join(sorted(self.models))})",
                        )
                    )
            beat = agent.heartbeat
            if beat is not None and beat.model is not None and beat.model not in self.models:
                problems.append(
                    (
                        ("agents", name, "heartbeat", "model"),
                        f"agent '{name}' beats on model '{beat.model}', which is not defined",
                        f"use one of the models under 'models:' ({', '.join(sorted(self.models))})",
                    )
                )
            if agent.model not in self.models:
                known = ", ".join(sorted(self.models)) or "none"
                problems.append(
                    (
                        ("agents", name, "model"),
                        f"agent '{name}' uses model '{agent.model}', which is not defined",
                        f"use one of the models under 'models:' ({known}), or add '{agent.model}' there",
                    )
                )
        for name, channel in self.channels.items():
            if channel.agent is not None and channel.agent not in self.agents:
                problems.append(
                    (
                        ("channels", name, "agent"),
                        f"channel '{name}' talks to agent '{channel.agent}', which is not defined",
                        f"use one of the agents under 'agents:' ({', '.join(sorted(self.agents))})",
                    )
                )
        if self.default_agent not in self.agents:
            known = ", ".join(sorted(self.agents)) or "none"
            problems.append(
                (
                    ("default_agent",),
                    f"default_agent '{self.default_agent}' is not defined under 'agents:'",
                    f"set default_agent to one of: {known}",
                )
            )
        return problems
