"""MCP over stdio with the server inside a sandbox: JSON-RPC lines through a streamed
command (the sandbox supervisor's two-way mode), as the SDK's own stdio transport does
with a local process. The server's output is hostile input: a line past MAX_LINE_BYTES
ends the connection."""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from hermitcrab.runtime import ExecResult, Stream

if TYPE_CHECKING:
    from mcp.client._transport import TransportStreams

log = logging.getLogger("hermitcrab.mcp")

MAX_LINE_BYTES = 8 * 1024 * 1024
STDERR_LINES = 20


class ServerOutput:
    """The last lines the server wrote to stderr, and how it ended: for a clear error."""

    def __init__(self) -> None:
        self.stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self.ended: ExecResult | None = None

    def describe(self) -> str:
        how = ""
        if self.ended is not None:
            killed = f", {self.ended.killed_by}" if self.ended.killed_by else ""
            said = self.ended.stderr.decode(errors="replace").strip()[:300]
            how = f"it exited ({self.ended.exit_code}{killed})" + (f": {said}" if said else "")
        tail = " | ".join(self.stderr)
        return "; ".join(filter(None, [how, f"its stderr: {tail}" if tail else ""])) or "no word from it"


@contextlib.asynccontextmanager
async def sandboxed_stdio(
    open_stream: Callable[[], Awaitable[Stream]], output: ServerOutput
) -> AsyncIterator[TransportStreams]:
    import anyio
    import mcp_types as types
    from mcp.shared.message import SessionMessage

    stream = await open_stream()
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def reader() -> None:
        buffer = bytearray()
        errors = bytearray()
        async with read_writer:
            while True:
                piece = await stream.read()
                if isinstance(piece, ExecResult):
                    output.ended = piece
                    return
                if piece.stream == "stderr":
                    errors.extend(piece.data)
                    *lines, rest = bytes(errors).split(b"\n")
                    output.stderr.extend(
                        line.decode(errors="replace")[:300] for line in lines if line.strip()
                    )
                    errors = bytearray(rest[-4096:])
                    continue
                buffer.extend(piece.data)
                if b"\n" not in piece.data:
                    if len(buffer) > MAX_LINE_BYTES:
                        output.stderr.append(f"(a message longer than {MAX_LINE_BYTES} bytes: cut off)")
                        return
                    continue
                *lines, rest = bytes(buffer).split(b"\n")
                buffer = bytearray(rest)
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        message: SessionMessage | Exception = SessionMessage(
                            types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                        )
                    except ValueError as exc:
                        message = exc
                    try:
                        await read_writer.send(message)
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        return

    async def writer() -> None:
        async with write_reader:
            async for message in write_reader:
                text = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                await stream.write(text.encode() + b"\n")

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(reader)
            tasks.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                tasks.cancel_scope.cancel()
    finally:
        await stream.close()
