"""The embedded model: a GGUF file run in-process by llama.cpp, loaded once, streamed.

llama.cpp is not thread-safe and blocks, so generation runs on a worker thread, one
request at a time, and chunks cross into the event loop through a queue. Because one
`Llama` object lives for the whole daemon, llama.cpp's own prefix reuse applies: a
follow-up turn whose prompt extends the previous one evaluates only the new tokens.

Tools: a small model's chat template knows nothing of them, so the tools are listed in
the system message, a call is a JSON object {"name": ..., "arguments": {...}} the model
writes as its whole reply, and a grammar built from the tools' JSON schemas constrains
decoding, so that even the 135M model writes a schema-valid call when it writes one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from hermitcrab.config.schema import LlamaCppModel
from hermitcrab.errors import ProviderError
from hermitcrab.inference.base import (
    ChatMessage,
    ChatRequest,
    Chunk,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolSpec,
)
from hermitcrab.inference.model_file import resolve_model_path

log = logging.getLogger("hermitcrab.llama")

# The start of a call as the grammar writes it (name first), for a reply cut by max_tokens.
_CALL_HEAD = re.compile(r'\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*', re.DOTALL)
_GRAMMAR_CACHE_SIZE = 32
# What the worker thread sends the event loop: ("text" | "call" | "done" | "error", value, extra).
Event = tuple[str, Any, Any]


class LlamaCppProvider:
    def __init__(self, name: str, config: LlamaCppModel) -> None:
        self.name = name
        self.config = config
        self.load_seconds: float | None = None
        self._llm: Any = None
        self._path: str | None = None
        self._loading: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()
        # Grammars by (tools' schemas, tool_choice): an agent offers the same tools each turn.
        self._grammars: dict[str, Any] = {}

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def describe(self) -> dict[str, Any]:
        return {
            "provider": "llama_cpp",
            "path": self._path or self.config.path or "bundled SmolLM2-135M-Instruct (Q4_1)",
            "loaded": self.loaded,
            "load_seconds": self.load_seconds,
            "context_tokens": self.config.context_tokens,
        }

    async def start(self) -> None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(asyncio.to_thread(self._load))
        await asyncio.shield(self._loading)

    def _load(self) -> None:
        path = resolve_model_path(self.config.path)
        self._path = str(path)
        started = time.perf_counter()
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ProviderError(
                f"llama-cpp-python is not installed ({exc}). fix: pip install llama-cpp-python (or `make up`)"
            ) from None
        try:
            self._llm = Llama(
                model_path=str(path),
                n_ctx=self.config.context_tokens,
                n_threads=self.config.threads or os.cpu_count() or 1,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ProviderError(f"llama.cpp could not load {path}: {exc}") from None
        self.load_seconds = time.perf_counter() - started

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            await asyncio.gather(self._loading, return_exceptions=True)
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.to_thread(llm.close)

    def _grammar(self, tools: tuple[ToolSpec, ...], choice: str) -> Any:
        """The grammar for these tools and this choice, or None where it cannot be built (then
        decoding is free, and a reply that is a call is still read as one)."""
        key = json.dumps([choice, [[t.name, t.parameters] for t in tools]], sort_keys=True)
        if key not in self._grammars:
            if len(self._grammars) >= _GRAMMAR_CACHE_SIZE:
                self._grammars.pop(next(iter(self._grammars)))
            self._grammars[key] = self._build_grammar(tools, choice)
        return self._grammars[key]

    def _build_grammar(self, tools: tuple[ToolSpec, ...], choice: str) -> Any:
        from llama_cpp import LlamaGrammar, llama_sampler_free, llama_sampler_init_grammar

        try:
            text = grammar_for(tools, choice)
        except Exception as exc:  # the schema converter raises assorted errors on what it lacks
            log.warning("model %s: no grammar for these tool schemas (%s); decoding is free", self.name, exc)
            return None
        # llama.cpp kills the process (segfault) when it samples with a grammar it cannot
        # parse; parsed here first, a bad one is only a NULL sampler.
        sampler = llama_sampler_init_grammar(self._llm._model.vocab, text.encode(), b"root")
        if not sampler:
            log.warning("model %s: llama.cpp rejected the tool grammar; decoding is free", self.name)
            return None
        llama_sampler_free(sampler)
        return LlamaGrammar.from_string(text, verbose=False)

    def _complete(self, request: ChatRequest, grammar_choice: str | None) -> Any:
        return self._llm.create_chat_completion(
            messages=to_llama_messages(request.messages, request.tools),
            max_tokens=request.max_tokens or self.config.max_tokens,
            temperature=self.config.temperature if request.temperature is None else request.temperature,
            stop=request.stop,
            stream=True,
            grammar=self._grammar(request.tools, grammar_choice) if grammar_choice else None,
        )

    def _generate(
        self, request: ChatRequest, choice: str, cancelled: threading.Event, put: Callable[[Event], None]
    ) -> None:
        """The worker thread's side: text as it comes, a call whole once it is complete.

        Under "auto" the model decodes free (most replies are text, and a grammar costs time
        and tens of megabytes); a reply that opens with "{" is a call, and is then written
        again under the call grammar, so that it is schema-valid. A forced choice decodes
        under its grammar from the start."""
        produced = 0
        calls = choice != "none"  # with tools offered, a reply may be a call
        parts = self._complete(request, choice if calls and choice != "auto" else None)
        # Until its first visible character a reply may be a call, so it is held back; a
        # call stays held to the end, to be parsed whole rather than streamed as JSON text.
        mode = "undecided" if calls else "text"
        held: list[str] = []
        finish: str | None = None
        again = False
        for text, reason in _pieces(parts, cancelled):
            finish = reason or finish
            if not text:
                continue
            produced += 1
            if mode == "call":
                held.append(text)
                continue
            if mode == "undecided":
                held.append(text)
                start = "".join(held).lstrip()
                if not start:
                    continue
                mode = "call" if start.startswith("{") else "text"
                if mode == "call":
                    again = choice == "auto"
                    if again:
                        break
                    continue
                text, held = "".join(held), []
            put(("text", text, None))
        if again:
            parts.close()  # the free attempt ends here; the prompt stays evaluated for the next
            held, finish = [], None
            for text, reason in _pieces(self._complete(request, "required"), cancelled):
                finish = reason or finish
                produced += bool(text)
                held.append(text)
        if held:  # a call, or a reply of white space only
            written = "".join(held)
            call = parse_call(written) if mode == "call" else None
            put(("call", call, None) if call else ("text", written, None))
            if call and finish == "stop":
                finish = "tool_calls"
        # n_tokens counts what the context holds now: the prompt plus what was made.
        prompt_tokens = max(int(self._llm.n_tokens) - produced, 0)
        put(("done", {"prompt_tokens": prompt_tokens, "completion_tokens": produced}, finish))

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        await self.start()
        choice = _choice(self.name, request)
        async with self._lock:  # one generation at a time: the model has one context
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue[Event] = asyncio.Queue()
            cancelled = threading.Event()

            def put(item: Event) -> None:
                loop.call_soon_threadsafe(queue.put_nowait, item)

            def generate() -> None:
                try:
                    self._generate(request, choice, cancelled, put)
                except BaseException as exc:
                    put(("error", exc, None))

            worker = loop.run_in_executor(None, generate)
            try:
                while True:
                    kind, value, extra = await queue.get()
                    if kind == "text":
                        yield Chunk(value)
                    elif kind == "call":
                        name, arguments = value
                        call_id = f"call_{uuid.uuid4().hex[:24]}"
                        yield Chunk(tool_calls=(ToolCallDelta(0, call_id, name, arguments),))
                    elif kind == "done":
                        yield Chunk("", finish_reason=extra or "stop", usage=value)
                        return
                    else:
                        raise _provider_error(self.name, value)
            finally:
                cancelled.set()
                await asyncio.shield(worker)


def _pieces(parts: Any, cancelled: threading.Event) -> Iterator[tuple[str, str | None]]:
    """llama-cpp-python's streamed parts as (text, finish reason), until cancelled."""
    for part in parts:
        if cancelled.is_set():
            return
        choice = part["choices"][0]
        yield choice["delta"].get("content") or "", choice.get("finish_reason")


def _choice(name: str, request: ChatRequest) -> str:
    """The request's tool_choice, resolved: "none" where no tools are offered."""
    if not request.tools or request.tool_choice == "none":
        return "none"
    choice = request.tool_choice or "auto"
    if choice not in ("auto", "required") and choice not in {t.name for t in request.tools}:
        offered = ", ".join(t.name for t in request.tools)
        raise ProviderError(
            f"model '{name}': tool_choice names the tool '{choice}', which is not offered ({offered}). "
            "fix: offer it in tools, or choose auto, none or required"
        )
    return choice


def tool_section(tools: tuple[ToolSpec, ...]) -> str:
    """The tools as the system message lists them: compact, and the same bytes every turn."""
    lines = ["You can call these tools:"]
    for tool in tools:
        properties = tool.parameters.get("properties") or {}
        required = set(tool.parameters.get("required") or ())
        names = ", ".join(p if p in required else f"{p}?" for p in properties)
        summary = (tool.description.strip().splitlines() or [""])[0][:200]
        lines.append(f"- {tool.name}({names}): {summary}")
    # Worded so: without "short values" the 135M model can loop inside a string until max_tokens.
    lines.append(
        'To call a tool, reply with only {"name": "<tool>", "arguments": {"<argument>": <value>, ...}}, '
        "with short values. Otherwise reply in plain text."
    )
    return "\n".join(lines)


def to_llama_messages(messages: list[ChatMessage], tools: tuple[ToolSpec, ...]) -> list[dict[str, str]]:
    """Our parts as plain role/content messages a chat template renders. A call is the JSON
    the model would write; a result is a user turn (templates that know no tool role still
    render it, and small models were trained on user turns)."""
    names: dict[str, str] = {}  # call id -> tool name, for results that do not carry it
    out: list[dict[str, str]] = []
    for message in messages:
        pieces: list[str] = []
        for part in message.parts:
            if isinstance(part, TextPart):
                if part.text:
                    pieces.append(part.text)
            elif isinstance(part, ToolCallPart):
                names[part.id] = part.name
                pieces.append(render_call(part))
            else:
                name = part.name or names.get(part.call_id, "the tool")
                pieces.append(f"Result of {name}{' (error)' if part.error else ''}: {part.content}")
        role = "user" if message.role == "tool" else message.role
        out.append({"role": role, "content": "\n\n".join(pieces)})
    if tools:  # under "none" too: a prompt whose start changes loses llama.cpp's prefix reuse
        section = tool_section(tools)
        system = next((m for m in out if m["role"] == "system"), None)
        if system is None:
            out.insert(0, {"role": "system", "content": section})
        else:
            system["content"] = f"{system['content']}\n\n{section}" if system["content"] else section
    return out


def render_call(call: ToolCallPart) -> str:
    try:
        arguments = json.dumps(json.loads(call.arguments or "{}"), ensure_ascii=False)
    except ValueError:
        arguments = call.arguments  # as it was written: the model should see its own mistake
    return f'{{"name": {json.dumps(call.name, ensure_ascii=False)}, "arguments": {arguments}}}'


def parse_call(text: str) -> tuple[str, str] | None:
    """(name, arguments JSON) of a reply that is a call, else None. A call cut short by
    max_tokens keeps the arguments as far as they were written: the agent loop reports them."""
    try:
        value = json.loads(text)
    except ValueError:
        head = _CALL_HEAD.match(text.lstrip())
        try:
            return (json.loads(head.group(1)), text.lstrip()[head.end() :]) if head else None
        except ValueError:  # a name with a bad escape: not a call the loop could run
            return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    return value["name"], json.dumps(value.get("arguments", {}), ensure_ascii=False)


def call_schema(tools: tuple[ToolSpec, ...], choice: str) -> dict[str, Any]:
    """The JSON schema of a reply that calls the chosen tool, or any tool."""
    chosen = [t for t in tools if choice in ("auto", "required") or t.name == choice]
    defs: dict[str, Any] = {}
    alternatives = []
    for index, tool in enumerate(chosen):
        parameters = _hoist_defs(tool.parameters, f"t{index}-", defs)
        alternatives.append({
            "type": "object",
            "properties": {"name": {"const": tool.name}, "arguments": parameters},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        })  # fmt: skip
    schema: dict[str, Any] = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    return {**schema, "$defs": defs} if defs else schema


def grammar_for(tools: tuple[ToolSpec, ...], choice: str) -> str:
    """GBNF for a reply that is a call: of this tool, or ("required") of any offered."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    # "name" first: the grammar then fixes which tool before the model writes arguments.
    schema = _without_long_bounds(call_schema(tools, choice))
    return json_schema_to_gbnf(json.dumps(schema), ["name", "arguments"])


# The converter spells a length bound out as nested optional repeats: `maxLength: 16000`
# becomes a grammar llama.cpp refuses after seconds of parsing. Bounds this long constrain
# nothing a small model would write; the tool's own validation still enforces them.
_GRAMMAR_MAX_BOUND = 64
_LENGTH_BOUNDS = ("maxLength", "minLength", "maxItems", "minItems")


def _without_long_bounds(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _without_long_bounds(v)
            for k, v in node.items()
            if not (k in _LENGTH_BOUNDS and isinstance(v, int) and v > _GRAMMAR_MAX_BOUND)
        }
    if isinstance(node, list):
        return [_without_long_bounds(v) for v in node]
    return node


def _hoist_defs(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A tool's parameters with its local $defs moved to the call schema's root, renamed by
    `prefix` so that two tools' definitions of the same name stay apart ("#/..." refs
    resolve against the root of the schema the converter is given)."""
    local = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    if not local:
        return schema

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items() if k not in ("$defs", "definitions")}
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
                out["$ref"] = f"#/$defs/{prefix}{ref.split('/', 2)[2]}"
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name, definition in local.items():
        defs[f"{prefix}{name}"] = rewrite(definition)
    return rewrite(schema)


def _provider_error(name: str, exc: BaseException) -> ProviderError:
    text = str(exc)
    if "context window" in text or "exceed context" in text:
        return ProviderError(
            f"model '{name}': the conversation is too long for its context window ({text}). "
            "fix: start a new session, send a shorter message, or raise context_tokens"
        )
    return ProviderError(f"model '{name}' failed: {type(exc).__name__}: {text}")
