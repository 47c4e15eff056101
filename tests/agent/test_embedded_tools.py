"""The real embedded model (SmolLM2-135M through llama.cpp) acting through the real
gateway: with the tool choice forced, it emits a schema-valid call that runs in the
agent's sandbox, and the file appears."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from hermitcrab.config.schema import LlamaCppModel
from hermitcrab.errors import ProviderError
from tests.agent.test_loop import ask, results

pytest.importorskip("llama_cpp")
pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")


def test_the_embedded_model_writes_crab_to_notes_txt(live_gateway, home) -> None:
    from hermitcrab.inference.llama import LlamaCppProvider

    home.config.write_text(home.config.read_text() + "    max_tool_steps: 2\n")
    model = LlamaCppProvider("embedded", LlamaCppModel(max_tokens=96, temperature=0.0))
    try:
        asyncio.run(model.start())
    except ProviderError as exc:
        pytest.skip(f"the embedded model cannot load here: {exc}")
    gw = live_gateway({"embedded": model})
    answer = ask(gw, "crab", "Write the word crab to notes.txt", timeout=300, tool_choice="write_file")
    call = next(e["data"] for e in gw.events("crab") if e["kind"] == "tool.call")
    arguments = json.loads(call["arguments"])  # schema-valid, thanks to the grammar
    assert call["name"] == "write_file" and set(arguments) == {"path", "content"}
    first = results(gw, "crab")[0]
    assert not first["error"], first
    written = home.workspace / arguments["path"].removeprefix("/workspace/")
    assert written.read_text() == arguments["content"]
    assert answer["kind"] in ("reply", "turn.failed")  # what it says after is the 135M model's business
