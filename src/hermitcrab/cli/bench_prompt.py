"""`hermitcrab bench prompt`: what the agent's very first model request costs, in tokens.

A fresh home is onboarded in a temporary folder, its agent pointed at a recorder on loopback
that speaks the OpenAI wire format; the real gateway runs one turn ("Say hello.") and the
recorder keeps the request body exactly as it came over HTTP: the system prompt built from
the workspace persona files, the user's message and every built-in tool with its schema.
That body is counted with cl100k (bpe-openai) and with the embedded model's own tokenizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hermitcrab.cli.bench_home import free_port

USER_MESSAGE = "Say hello."
SESSION = "bench-prompt"
TURN_TIMEOUT_SECONDS = 30.0
TARGET_TOKENS = 2000
SKILLS_TARGET_TOKENS = 3000
# Measured on this machine with the same stub model, the whole first request in cl100k tokens.
PEERS = (("OpenClaw", 14600), ("Hermes Agent", 13408), ("nanobot", 7941))

CONFIG = """\
version: 1
gateway:
  port: {gateway_port}
models:
  bench:
    provider: openai
    base_url: {base_url}
    model: bench
agents:
  main:
    model: bench
default_agent: main
"""


class Recorder:
    """An OpenAI-compatible server on loopback that keeps each chat request's raw body and
    answers with a short streamed completion, so that the turn ends normally."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.http.daemon_threads = True
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/v1"

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.shutdown()
        self.http.server_close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self.send_error(404)
                    return
                recorder.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()  # no length: the stream ends when we close
                self.close_connection = True
                self._event({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello!"},
                                          "finish_reason": None}]})  # fmt: skip
                self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self._event({"choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 1}})
                self.wfile.write(b"data: [DONE]\n\n")

            def _event(self, payload: dict[str, Any]) -> None:
                base = {"id": "bench", "object": "chat.completion.chunk", "created": 0, "model": "bench"}
                self.wfile.write(f"data: {json.dumps({**base, **payload})}\n\n".encode())

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the bench only; the caller's values come back after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


async def _one_turn(recorder: Recorder) -> None:
    from hermitcrab.config.loader import load_config
    from hermitcrab.config.paths import Paths
    from hermitcrab.gateway.service import Gateway
    from hermitcrab.store.sessions import ANSWERS

    paths = Paths.from_env()
    gateway = Gateway(paths, load_config(paths.config))
    await gateway.start()
    try:
        assert gateway.store is not None
        await gateway.submit(SESSION, USER_MESSAGE, None, source="bench")
        deadline = time.monotonic() + TURN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            events = await asyncio.to_thread(gateway.store.events, SESSION)
            answers = [e for e in events if e.kind in ANSWERS]
            if answers:
                if not recorder.bodies:
                    raise SystemExit(f"error: the turn ended before any model request: {answers[0].data}")
                return
            await asyncio.sleep(0.02)
        raise SystemExit(f"error: the bench turn did not finish within {TURN_TIMEOUT_SECONDS:.0f} s")
    finally:
        await gateway.stop()


# Fifty skills as people install them: a name and a one-line description each (about as
# long as those of OpenClaw's bundled skills).
SKILL_TOPICS = (
    "GitHub issues and pull requests", "calendar events", "expense reports from CSV files",
    "weather forecasts", "Docker containers", "PDF documents", "spreadsheets", "email drafts",
    "meeting notes", "invoices", "database backups", "log files", "photo albums", "recipes",
    "travel plans", "reading lists", "home automation scenes", "package updates",
    "SSL certificates", "DNS records", "Kubernetes deployments", "CI pipelines", "test reports",
    "release notes", "translations", "podcasts", "RSS feeds", "bookmarks", "passwords policies",
    "server health checks", "disk usage", "music playlists", "flashcards", "timesheets",
    "grocery lists", "fitness logs", "budgets", "contracts", "slide decks", "diagrams",
    "changelogs", "API documentation", "code reviews", "screenshots", "video transcripts",
    "weekly reports", "customer tickets", "inventory", "shipping labels", "newsletters",
)  # fmt: skip


def write_skills(folder: Path, count: int) -> None:
    for n, topic in enumerate(SKILL_TOPICS[:count]):
        name = f"skill-{n:02d}"
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "SKILL.md").write_text(
            f"---\nname: {name}\ndescription: Create, search and summarise {topic}, "
            f"with the commands and checks this takes.\n---\n# {topic}\n\nSteps...\n"
        )


# Three MCP servers as people configure them: their tools' names, one-line descriptions and
# argument names modelled on the MCP project's filesystem, git and fetch servers.
MCP_SERVERS = {
    "files": [
        ("read_text_file", "Read the complete contents of a file as text.", ["path", "head", "tail"]),
        ("read_media_file", "Read an image or audio file as base64 data.", ["path"]),
        ("read_multiple_files", "Read the contents of multiple files at once.", ["paths"]),
        ("write_file", "Create a new file or overwrite an existing one.", ["path", "content"]),
        ("edit_file", "Make line-based edits to a text file.", ["path", "edits", "dryRun"]),
        ("create_directory", "Create a new directory, with its parents.", ["path"]),
        ("list_directory", "List the files and directories in a path.", ["path"]),
        ("directory_tree", "A recursive tree of files and directories as JSON.", ["path"]),
        ("move_file", "Move or rename a file or directory.", ["source", "destination"]),
        ("search_files", "Search for files matching a pattern, recursively.", ["path", "pattern"]),
        ("get_file_info", "Metadata about a file or directory: size, times, type.", ["path"]),
        ("list_allowed_directories", "The directories this server may access.", []),
    ],
    "git": [
        ("git_status", "Show the working tree status.", ["repo_path"]),
        ("git_diff", "Show changes between the working tree and a commit.", ["repo_path", "target"]),
        ("git_commit", "Record changes to the repository.", ["repo_path", "message"]),
        ("git_add", "Add file contents to the staging area.", ["repo_path", "files"]),
        ("git_log", "Show the commit logs.", ["repo_path", "max_count"]),
    ],
    "fetch": [
        ("fetch", "Fetch a URL and return its content as markdown.", ["url", "max_length", "start_index"]),
    ],
}
STUB_MCP_SERVER = r"""
import json, sys
tools = json.loads(sys.argv[1])
def say(i, result): print(json.dumps({"jsonrpc": "2.0", "id": i, "result": result}), flush=True)
for line in sys.stdin:
    m = json.loads(line)
    if "id" not in m: continue
    if m["method"] == "initialize":
        say(m["id"], {"protocolVersion": m["params"]["protocolVersion"], "capabilities": {"tools": {}},
                      "serverInfo": {"name": "bench", "version": "1"}})
    elif m["method"] == "tools/list":
        say(m["id"], {"tools": [{"name": n, "description": d, "inputSchema": {"type": "object",
              "properties": {a: {"type": "string", "description": a.replace("_", " ")} for a in args},
              "required": args[:1]}} for n, d, args in tools]})
    else:
        print(json.dumps({"jsonrpc": "2.0", "id": m["id"], "error": {"code": -32601, "message": "no"}}),
              flush=True)
"""


def mcp_config(servers: int) -> str:
    """hermitcrab.yaml's mcp section for the first `servers` of MCP_SERVERS, each a stub that
    speaks MCP over stdio in the sandbox (the system's python3, standard library only)."""
    if not servers:
        return ""
    lines = ["mcp:", "  servers:"]
    for name, tools in list(MCP_SERVERS.items())[:servers]:
        lines += [f"    {name}:", "      command: /usr/bin/python3",
                  f"      args: {json.dumps(['-c', STUB_MCP_SERVER, json.dumps(tools)])}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def first_request(skills: int = 0, mcp_servers: int = 0) -> bytes:
    """The raw body of the first model request a freshly onboarded agent sends for a hello,
    with `skills` skills installed and `mcp_servers` MCP servers configured."""
    from hermitcrab.cli.onboard import run as onboard
    from hermitcrab.config.paths import HOME_ENV

    with tempfile.TemporaryDirectory(prefix="hcbp") as tmp, Recorder() as recorder:
        home = Path(tmp) / "home"
        # An HTTP(S)_PROXY in the caller's environment must not carry loopback traffic away.
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
        with _environ(**{HOME_ENV: str(home), "NO_PROXY": no_proxy, "no_proxy": no_proxy}):
            with contextlib.redirect_stdout(io.StringIO()):
                onboard(yes=True)
            write_skills(home / "skills", skills)
            config = CONFIG.format(gateway_port=free_port(), base_url=recorder.base_url)
            (home / "hermitcrab.yaml").write_text(config + mcp_config(mcp_servers))
            if mcp_servers:  # the policy lets their tools run (the turn never calls one)
                _allow_servers(home / "policy.yaml", list(MCP_SERVERS)[:mcp_servers])
            asyncio.run(_one_turn(recorder))
        return recorder.bodies[0]


def _allow_servers(policy_file: Path, servers: list[str]) -> None:
    """Their tools allowed; the workspace measured, not a loop-mounted filesystem (a
    temporary home is gone when the bench is done, and a mount would hold it)."""
    policy = policy_file.read_text()
    policy = policy.replace("  workspace_quota: required ", "  workspace_quota: best_effort ")
    allowed = ", ".join(f"{n}__*" for n in servers)
    policy_file.write_text(policy.replace("memory_write]", f"memory_write, {allowed}]", 1))


def _cl100k() -> Any:
    try:
        import bpe_openai
    except ImportError:
        raise SystemExit(
            "error: the benchmark counts cl100k tokens with bpe-openai. fix: pip install bpe-openai"
        ) from None
    return bpe_openai.get_encoding("cl100k_base")


def _embedded_tokens(text: str) -> tuple[int | None, str | None]:
    """Tokens by the bundled model's own vocabulary (loaded alone, no weights), or why not."""
    try:
        import llama_cpp

        from hermitcrab.inference.model_file import resolve_model_path

        # llama.cpp warns about a context with no weights behind it even with verbose=False.
        with contextlib.redirect_stderr(io.StringIO()):
            llm = llama_cpp.Llama(model_path=str(resolve_model_path(None)), vocab_only=True, verbose=False)
        try:
            return len(llm.tokenize(text.encode(), add_bos=False, special=True)), None
        finally:
            llm.close()
    except Exception as exc:  # any failure to load is reported, not fatal: cl100k is the figure
        return None, f"{type(exc).__name__}: {exc}"


def count(body: bytes) -> dict[str, Any]:
    """The body's cost, whole and by part."""
    encoding = _cl100k()

    def tokens(text: str) -> int:
        # The body is plain text to the tokenizer: a "<|endoftext|>" in it is not a special token.
        return len(encoding.encode(text, disallowed_special=()))

    text = body.decode()
    request = json.loads(text)
    tools = request.get("tools") or []
    system = "\n".join(
        m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
        for m in request.get("messages", [])
        if m.get("role") == "system"
    )
    embedded, embedded_error = _embedded_tokens(text)
    results: dict[str, Any] = {
        "bare_turn_prompt_tokens": tokens(text),
        "embedded_tokens": embedded,
        "tools_offered": len(tools),
        "tools": [t.get("function", {}).get("name") for t in tools],
        "system_prompt_tokens": tokens(system),
        # Compact, as the SDK sends it: json.dumps's default spaces would add tokens the wire has not.
        "tools_tokens": tokens(json.dumps(tools, separators=(",", ":"), ensure_ascii=False)),
        "body_bytes": len(body),
        "target_tokens": TARGET_TOKENS,
    }
    if embedded_error is not None:
        results["embedded_error"] = embedded_error
    return results


def measure() -> dict[str, Any]:
    _cl100k()  # fail before the gateway starts when the tokenizer is missing
    results = count(first_request())
    with_skills = first_request(skills=len(SKILL_TOPICS))
    results["with_50_skills_tokens"] = count(with_skills)["bare_turn_prompt_tokens"]
    with_mcp = count(first_request(mcp_servers=len(MCP_SERVERS)))
    results["with_3_mcp_servers_tokens"] = with_mcp["bare_turn_prompt_tokens"]
    results["with_3_mcp_servers_tools"] = with_mcp["tools_offered"]
    results["skills_target_tokens"] = SKILLS_TARGET_TOKENS
    return results


def prompt(json_output: bool) -> None:
    results = measure()
    if json_output:
        print(json.dumps(results, indent=2))
        return
    r = results
    total = r["bare_turn_prompt_tokens"]
    print(f"first request, whole body   {total:7,} cl100k tokens   (target <= {TARGET_TOKENS:,}, "
          f"with all {r['tools_offered']} built-in tools offered)")  # fmt: skip
    print(f"  system prompt             {r['system_prompt_tokens']:7,}")
    print(f"  tools                     {r['tools_tokens']:7,}")
    skills, servers, tools = (
        r["with_50_skills_tokens"],
        r["with_3_mcp_servers_tokens"],
        r["with_3_mcp_servers_tools"],
    )
    print(f"with 50 skills installed    {skills:7,}   (target <= {SKILLS_TARGET_TOKENS:,})")
    print(f"with 3 MCP servers          {servers:7,}   ({tools} tools offered; target <= {TARGET_TOKENS:,})")
    embedded = r["embedded_tokens"]
    shown = f"{embedded:7,}" if embedded is not None else f"   n/a ({r.get('embedded_error')})"
    print(f"embedded model's tokenizer  {shown}")
    print("peers, measured on this machine with the same stub model:")
    for name, peer in PEERS:
        print(f"  {name:<25} {peer:7,}")
