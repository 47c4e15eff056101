"""`send_message`: a message to the session, shown to whoever follows it while the turn
goes on. Channels (later) add other destinations, under the policy."""

from __future__ import annotations

from pydantic import Field

from hermitcrab.tools.base import Args, Risk, Tool, ToolContext, ToolResult

MAX_MESSAGE_CHARS = 16000


class MessageArgs(Args):
    text: str = Field(max_length=MAX_MESSAGE_CHARS)


class SendMessageTool(Tool):
    name = "send_message"
    description = "Send a message to the user now, before the final reply."
    risk: Risk = "external"  # it reaches a person
    Args = MessageArgs

    def summary(self, args: MessageArgs) -> str:
        return f"send_message: {args.text[:200]}"

    async def run(self, args: MessageArgs, ctx: ToolContext) -> ToolResult:
        if ctx.post is None:
            return ToolResult("send_message: no session to send to", error=True)
        await ctx.post(args.text)
        return ToolResult("sent")
