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


def start_channels(gw: Gateway) -> Channels | None:
    """Every channel of the config, each with its token from the secrets store (one whose
    token is missing is listed as failed, with the fix)."""
    if not gw.config.channels or gw.db is None:
        return None
    from hermitcrab.channels.manager import Channels
    from hermitcrab.channels.telegram import Telegram
    from hermitcrab.channels.webhook import Webhook
    from hermitcrab.egress.secrets import SecretError, SecretStore

    channels = Channels(GatewayDoor(gw), gw.db.pairing, gw.config.default_agent)
    secrets = SecretStore(gw.paths.secrets)
    for name, config in gw.config.channels.items():
        secret = config.token_secret if config.type == "telegram" else config.secret
        try:
            value = secrets.get(secret).value
        except (SecretError, OSError, ValueError) as exc:
            what = "the bot's token, from @BotFather" if config.type == "telegram" else "the signing key"
            channels.start(name, config, None, f"{exc} ({what})")
            continue
        if config.type == "telegram":
            channels.start(name, config, Telegram(name, config, value))
        else:
            channels.start(name, config, Webhook(name, config, value))
        log.info("channel started", extra={"channel": name, "type": config.type})
    return channels
