"""Tool calls on the embedded model, for real: SmolLM2-135M through llama.cpp, its decoding
constrained by a grammar built from the tools' JSON schemas."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hermitcrab.config.schema import LlamaCppModel
from hermitcrab.errors import ProviderError
from hermitcrab.inference import (
    ChatMessage,
    ChatRequest,
    Completion,
    ToolCallPart,
    ToolResultPart,
    ToolSpec,
    complete,
)
from hermitcrab.inference.llama import LlamaCppProvider, to_llama_messages

pytest.importorskip("llama_cpp")


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


WRITE = ToolSpec(
    "write_file",
    "Write text to a file in the workspace.",
    _object({"path": {"type": "string"}, "content": {"type": "string"}}, ["path", "content"]),
)
READ = ToolSpec(
    "read_file", "Read a file from the workspace.", _object({"path": {"type": "string"}}, ["path"])
)
LIST = ToolSpec(
    "list_files",
    "List the files in a folder.",
    _object({"folder": {"type": "string"}, "recursive": {"type": "boolean"}}, ["folder"]),
)
TOOLS = (WRITE, READ, LIST)
SYSTEM = ChatMessage.of("system", "You are a helpful assistant.")
WRITE_CRAB = ChatMessage.of("user", "Write the word crab to notes.txt")


@pytest.fixture(scope="module")
def provider() -> LlamaCppProvider:
    embedded = LlamaCppProvider("embedded", LlamaCppModel(max_tokens=128, temperature=0.0))
    try:
        asyncio.run(embedded.start())
    except ProviderError as exc:
        pytest.skip(f"the embedded model cannot load here: {exc}")
    return embedded


def ask(provider: LlamaCppProvider, messages: list[ChatMessage], choice: str | None, **kw: Any) -> Completion:
    return asyncio.run(complete(provider, ChatRequest(messages, tools=TOOLS, tool_choice=choice, **kw)))


def assert_valid_call(call: ToolCallPart) -> None:
    """The arguments parse and match the tool's schema: required keys, no others, right types."""
    spec = next(t for t in TOOLS if t.name == call.name)
    arguments = json.loads(call.arguments)
    assert isinstance(arguments, dict), call
    properties = spec.parameters["properties"]
    assert set(spec.parameters["required"]) <= set(arguments) <= set(properties), call
    types = {"string": str, "boolean": bool}
    for key, value in arguments.items():
        assert isinstance(value, types[properties[key]["type"]]), (key, value)
    assert call.id.startswith("call_")


def test_a_named_tool_is_called_with_schema_valid_arguments(provider: LlamaCppProvider) -> None:
    result = ask(provider, [SYSTEM, WRITE_CRAB], "write_file", max_tokens=128)
    assert [c.name for c in result.tool_calls] == ["write_file"]
    assert_valid_call(result.tool_calls[0])
    # The call travels as a call, never as JSON text.
    assert result.text == "" and result.finish_reason == "tool_calls"


def test_required_calls_one_of_the_offered_tools(provider: LlamaCppProvider) -> None:
    result = ask(
        provider, [SYSTEM, ChatMessage.of("user", "List the files in src")], "required", max_tokens=96
    )
    assert len(result.tool_calls) == 1 and result.text == ""
    assert_valid_call(result.tool_calls[0])


def test_auto_greeting_is_text_or_a_valid_call(provider: LlamaCppProvider) -> None:
    result = ask(provider, [SYSTEM, ChatMessage.of("user", "Hello!")], "auto", max_tokens=64)
    if result.tool_calls:
        assert result.text == ""
        assert_valid_call(result.tool_calls[0])
    else:
        # Under "auto" a reply that opens with "{" is written again as a call.
        assert result.text.strip() and not result.text.lstrip().startswith("{")


def test_a_conversation_with_a_call_and_its_result(provider: LlamaCppProvider) -> None:
    call = ToolCallPart("call_1", "write_file", '{"path": "notes.txt", "content": "crab"}')
    history = [
        SYSTEM,
        WRITE_CRAB,
        ChatMessage("assistant", (call,)),
        ChatMessage("tool", (ToolResultPart("call_1", "wrote 4 bytes", name="write_file"),)),
    ]
    rendered = to_llama_messages(history, TOOLS)
    assert rendered[2] == {
        "role": "assistant",
        "content": f'{{"name": "write_file", "arguments": {call.arguments}}}',
    }
    assert rendered[3] == {"role": "user", "content": "Result of write_file: wrote 4 bytes"}
    # The system message (with the tool list) is the same bytes as on the first turn:
    # llama.cpp reuses the evaluated prefix only while the prompt's start is unchanged.
    assert rendered[0] == to_llama_messages([SYSTEM, WRITE_CRAB], TOOLS)[0]
    assert "- write_file(path, content): Write text" in rendered[0]["content"]
    assert "- list_files(folder, recursive?): List" in rendered[0]["content"]

    result = ask(provider, history, None, max_tokens=64)
    assert result.usage["prompt_tokens"] > 100
    for made in result.tool_calls:
        assert_valid_call(made)
    assert result.tool_calls or result.text.strip()


def test_a_tool_choice_that_names_no_offered_tool_is_refused(provider: LlamaCppProvider) -> None:
    with pytest.raises(ProviderError, match="'delete_everything', which is not offered"):
        ask(provider, [SYSTEM, WRITE_CRAB], "delete_everything")


def test_a_schema_without_a_grammar_falls_back_to_free_decoding(provider: LlamaCppProvider) -> None:
    """The converter cannot take a remote $ref: the request must still run, not fail or crash."""
    odd = ToolSpec("odd", "A tool with an odd schema.", {"$ref": "other.json#/args"})
    request = ChatRequest(
        [SYSTEM, ChatMessage.of("user", "Hi")], max_tokens=16, tools=(odd,), tool_choice="odd"
    )
    result = asyncio.run(complete(provider, request))
    assert result.text or result.tool_calls


def test_tools_whose_schemas_share_a_definition_name_keep_them_apart(provider: LlamaCppProvider) -> None:
    """pydantic puts nested models and enums in $defs; two tools may both have a "Mode"."""

    def with_mode(name: str, modes: list[str]) -> ToolSpec:
        parameters = _object({"mode": {"$ref": "#/$defs/Mode"}}, ["mode"])
        return ToolSpec(name, "", {**parameters, "$defs": {"Mode": {"type": "string", "enum": modes}}})

    grammar = provider._grammar((with_mode("a", ["append"]), with_mode("b", ["bold"])), "required")
    assert grammar is not None  # llama.cpp parsed it
    assert '"\\"append\\""' in grammar._grammar and '"\\"bold\\""' in grammar._grammar


def test_llama_cpp_accepts_the_grammar_of_every_built_in_tool(provider: LlamaCppProvider) -> None:
    """A long length bound (send_message's maxLength) once made a grammar llama.cpp refused
    after seconds of parsing, and the embedded model decoded free."""
    from hermitcrab.tools import builtin_tools

    specs = tuple(tool.spec() for tool in builtin_tools().values())
    for choice in ("required", *(s.name for s in specs)):
        assert provider._grammar(specs, choice) is not None, choice


def test_under_auto_a_reply_that_opens_a_call_is_written_again_as_a_valid_one(
    provider: LlamaCppProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Free decoding first; the model's own first attempt here is a broken call (as a small
    model's often is), so the reply is decoded again under the grammar of every tool."""
    real = provider._complete
    asked: list[str | None] = []

    def broken_start() -> Any:
        for piece in (" ", '{"nam', 'e": write'):
            yield {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}

    def complete(request: ChatRequest, grammar_choice: str | None) -> Any:
        asked.append(grammar_choice)
        return broken_start() if grammar_choice is None else real(request, grammar_choice)

    monkeypatch.setattr(provider, "_complete", complete)
    result = ask(provider, [SYSTEM, WRITE_CRAB], "auto")
    assert asked == [None, "required"]
    assert len(result.tool_calls) == 1 and result.text == ""
    assert_valid_call(result.tool_calls[0])
