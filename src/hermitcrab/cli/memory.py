"""`hermitcrab memory search|reindex`: the agent's memory from the shell, straight from the
store and the workspace (no gateway needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hermitcrab.cli.output import fail, print_json
from hermitcrab.config.paths import Paths

if TYPE_CHECKING:
    from hermitcrab.memory import Memory
    from hermitcrab.store import Store


def _memory(agent: str | None) -> tuple[Store, Memory]:
    from hermitcrab.config.loader import load_config
    from hermitcrab.memory import Memory
    from hermitcrab.store import Store

    paths = Paths.from_env()
    config = load_config(paths.config)
    name = agent or config.default_agent
    if name not in config.agents:
        fail(f"no agent named '{name}'; known: {', '.join(config.agents)}")
    spec = config.agents[name]
    workspace = Path(spec.workspace).expanduser() if spec.workspace else paths.workspace
    from hermitcrab.gateway.service import store_location

    store = Store(store_location(paths, config))
    return store, Memory(store.memory, name, workspace)


def search(query: str, agent: str | None, limit: int, json_output: bool) -> None:
    store, memory = _memory(agent)
    try:
        hits = memory.search(query, limit)
    finally:
        store.close()
    if json_output:
        print_json({"query": query, "hits": [
            {"path": h.path, "line": h.line, "text": h.text, "heading": h.heading, "score": round(h.score, 4)}
            for h in hits
        ]})  # fmt: skip
        return
    if not hits:
        print(f"Nothing in memory for {query!r}.")
    for hit in hits:
        print(f"{hit.where}: {hit.text}")


def reindex(agent: str | None) -> None:
    store, memory = _memory(agent)
    try:
        files = memory.reindex()
        lines = store.memory.count(memory.agent)
    finally:
        store.close()
    print(f"indexed {files} memory file(s), {lines} line(s)")
