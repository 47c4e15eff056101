"""The gateway's side of the chat channels: its inbox, its live feed and its approvals, as
`channels.base.Door` asks; and starting each configured channel with its secret."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hermitcrab.channels.manager import Channels
    from hermitcrab.gateway.service import Gateway

log = logging.getLogger("hermitcrab.channels")


class GatewayDoor:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def submit(
        self,
        session_id: str,
        text: str,
        agent: str | None,
        source: str,
        source_id: str | None = None,
        **options: Any,
    ) -> Any:
        return await self.gw.submit(session_id, text, agent, source, source_id, **options)

    def listen(self, session_id: str) -> AbstractContextManager[Any]:
        return self.gw.hub.listen(session_id)

    async def save(self, agent: str, path: str, data: bytes) -> str | None:
        runtime = await self.gw.sandbox_runtime()
        owner = self.gw.agent(agent)
        await runtime.ensure(owner.sandbox, workspace=owner.workspace, agent=owner.name)
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1"'
        result = await runtime.exec(
            owner.sandbox, ["sh", "-c", script, "sh", path], actor="channel", stdin=data
        )
        if result.exit_code != 0:
            return result.stderr.decode(errors="replace")[:300] or f"exit {result.exit_code}"
        return None

    async def decide(self, approval_id: str, allow: bool, always: bool, by: str) -> Any:
        await self.gw.sandbox_runtime()  # the inbox starts with it
        assert self.gw.approvals is not None
        return self.gw.approvals.decide(approval_id, allow, always, by)


# Each service's secrets (the config field naming each, what it is) and the extra that brings
# its client library, where it needs one.
SECRETS: dict[str, list[tuple[str, str]]] = {
    "telegram": [("token_secret", "the bot's token, from @BotFather")],
    "slack": [("token_secret", "the bot token, xoxb-"), ("app_token_secret", "the app-level token, xapp-")],
    "discord": [("token_secret", "the bot's token, from the developer portal")],
    "matrix": [("token_secret", "the account's access token")],
    "email": [("password_secret", "the mailbox's password")],
    "webhook": [("secret", "the signing key")],
}


def make_service(name: str, config: Any, secrets: list[str], cursors: Any) -> Any:
    """The service for a channel; raises ImportError where its client library is missing."""
    kind = config.type
    if kind == "telegram":
        from hermitcrab.channels.telegram import Telegram

        return Telegram(name, config, secrets[0])
    if kind == "slack":
        from hermitcrab.channels.slack import Slack

        return Slack(name, config, secrets[0], secrets[1])
    if kind == "discord":
        from hermitcrab.channels.discord import Discord

        return Discord(name, config, secrets[0])
    if kind == "matrix":
        from hermitcrab.channels.matrix import Matrix

        return Matrix(name, config, secrets[0], cursors)
    if kind == "email":
        from hermitcrab.channels.email import Email

        return Email(name, config, secrets[0])
    from hermitcrab.channels.webhook import Webhook

    return Webhook(name, config, secrets[0])


def start_channels(gw: Gateway) -> Channels | None:
    """Every channel of the config, each with its secrets from the secrets store (one whose
    secret or client library is missing is listed as failed, with the fix)."""
    if not gw.config.channels or gw.db is None:
        return None
    from hermitcrab.channels.manager import Channels
    from hermitcrab.egress.secrets import SecretError, SecretStore

    channels = Channels(GatewayDoor(gw), gw.db.pairing, gw.config.default_agent)
    store = SecretStore(gw.paths.secrets)
    for name, config in gw.config.channels.items():
        values: list[str] = []
        try:
            for field, what in SECRETS[config.type]:
                try:
                    values.append(store.get(getattr(config, field)).value)
                except (SecretError, OSError, ValueError) as exc:
                    raise LookupError(f"{exc} ({what})") from None
            service = make_service(name, config, values, gw.db.cursors)
        except LookupError as exc:
            channels.start(name, config, None, str(exc))
            continue
        except ImportError as exc:
            fix = f"pip install 'hermitcrab[channels]' ({exc.name or exc} is missing)"
            channels.start(name, config, None, f"the {config.type} client is not installed: {fix}")
            continue
        channels.start(name, config, service)
        log.info("channel started", extra={"channel": name, "type": config.type})
    return channels
