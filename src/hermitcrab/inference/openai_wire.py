"""Our parts in OpenAI's chat-completions wire format, and back.

Used both ways: by the OpenAI-compatible provider (we are the client) and by the
gateway's /v1 API (we are the server). OpenAI has no error flag on a tool result, so an
error travels as content that starts with "error: ".
"""

from __future__ import annotations

from typing import Any

from hermitcrab.inference.base import (
    ChatMessage,
    Part,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
)

ERROR_PREFIX = "error: "


def to_wire(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "tool" or message.tool_results:
            for result in message.tool_results:
                content = f"{ERROR_PREFIX}{result.content}" if result.error else result.content
                out.append({"role": "tool", "tool_call_id": result.call_id, "content": content})
            continue
        item: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.tool_calls:
            item["content"] = message.content or None
            item["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in message.tool_calls
            ]
        out.append(item)
    return out


def tools_to_wire(tools: tuple[ToolSpec, ...]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tools
    ]


def choice_to_wire(choice: str | None) -> Any:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


def choice_from_wire(raw: Any) -> str | None:
    """`tool_choice` as a client sends it: "auto" | "none" | "required" | {"function": {"name"}}."""
    if raw is None or raw in ("auto", "none", "required"):
        return raw
    if (
        isinstance(raw, dict)
        and isinstance(raw.get("function"), dict)
        and isinstance(raw["function"].get("name"), str)
    ):
        return raw["function"]["name"]
    raise ValueError(
        '\'tool_choice\' must be auto, none, required or {"type": "function", "function": {"name": ...}}'
    )


def tools_from_wire(raw: Any) -> tuple[ToolSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("'tools' must be a list")
    specs = []
    for index, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise ValueError(
                f'tools[{index}] must be {{"type": "function", "function": {{"name": ..., ...}}}}'
            )
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise ValueError(f"tools[{index}].function.parameters must be a JSON schema object")
        specs.append(ToolSpec(function["name"], str(function.get("description") or ""), parameters))
    return tuple(specs)


def from_wire(raw: Any) -> list[ChatMessage]:
    """A client's `messages`, checked: each problem says which message and what is wrong."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("'messages' must be a non-empty list")
    messages: list[ChatMessage] = []
    for index, item in enumerate(raw):
        role = item.get("role") if isinstance(item, dict) else None
        if role not in ("system", "developer", "user", "assistant", "tool"):
            raise ValueError(f"messages[{index}] needs a 'role' of system, user, assistant or tool")
        text = _text(item.get("content"), index)
        if role == "tool":
            call_id = item.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise ValueError(f"messages[{index}]: a tool message needs its 'tool_call_id'")
            error = text.startswith(ERROR_PREFIX)
            result = ToolResultPart(call_id, text[len(ERROR_PREFIX) :] if error else text, error)
            if messages and messages[-1].role == "tool":  # results of one response travel together
                messages[-1] = ChatMessage("tool", (*messages[-1].parts, result))
            else:
                messages.append(ChatMessage("tool", (result,)))
            continue
        parts: list[Part] = [TextPart(text)] if text else []
        for call_index, call in enumerate(item.get("tool_calls") or [] if role == "assistant" else []):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise ValueError(f"messages[{index}].tool_calls[{call_index}] needs a function with a name")
            arguments = function.get("arguments", "{}")
            parts.append(
                ToolCallPart(
                    str(call.get("id") or f"call_{index}_{call_index}"),
                    function["name"],
                    arguments if isinstance(arguments, str) else "{}",
                )
            )
        messages.append(ChatMessage("system" if role == "developer" else role, tuple(parts)))
    return messages


def _text(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        raise ValueError(f"messages[{index}].content must be text")
    return content


def deltas_from_wire(raw: Any) -> tuple[ToolCallDelta, ...]:
    """The SDK's streamed `delta.tool_calls` as our deltas."""
    out = []
    for item in raw or ():
        function = getattr(item, "function", None)
        out.append(
            ToolCallDelta(
                index=item.index,
                id=item.id,
                name=getattr(function, "name", None),
                arguments=getattr(function, "arguments", None) or "",
            )
        )
    return tuple(out)


def deltas_to_wire(deltas: tuple[ToolCallDelta, ...]) -> list[dict[str, Any]]:
    out = []
    for d in deltas:
        item: dict[str, Any] = {"index": d.index, "function": {"arguments": d.arguments}}
        if d.id:
            item["id"] = d.id
            item["type"] = "function"
        if d.name:
            item["function"]["name"] = d.name
        out.append(item)
    return out
