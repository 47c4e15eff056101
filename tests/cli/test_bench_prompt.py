"""`hermitcrab bench prompt`, run in-process: the first request really is recorded whole."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hermitcrab.cli import bench_prompt


def _embedded_loads() -> bool:
    try:
        import llama_cpp  # noqa: F401

        from hermitcrab.inference.model_file import resolve_model_path

        resolve_model_path(None)
    except Exception:
        return False
    return True


def test_first_request_is_counted_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bench makes its own home: the caller's must be left as it was, unmade and unchanged.
    callers = tmp_path / "callers-home"
    monkeypatch.setenv("HERMITCRAB_HOME", str(callers))

    body = bench_prompt.first_request()

    assert os.environ["HERMITCRAB_HOME"] == str(callers)
    assert not callers.exists()
    request = json.loads(body)
    assert {"role": "user", "content": bench_prompt.USER_MESSAGE} in request["messages"]
    assert any(m["role"] == "system" and m["content"] for m in request["messages"])

    results = bench_prompt.count(body)
    assert results["tools_offered"] >= 8
    assert results["tools_offered"] == len(results["tools"]) == len(request["tools"])
    assert "exec" in results["tools"]
    # Far more than the two messages alone could make: the tools' schemas are in the count.
    assert results["bare_turn_prompt_tokens"] > 100
    assert results["bare_turn_prompt_tokens"] > results["tools_tokens"] > 0
    assert results["body_bytes"] == len(body)
    if _embedded_loads():
        assert isinstance(results["embedded_tokens"], int) and results["embedded_tokens"] > 100
        assert "embedded_error" not in results
    else:
        assert results["embedded_tokens"] is None and results["embedded_error"]


def test_fifty_installed_skills_reach_the_prompt_by_name_only() -> None:
    body = json.loads(bench_prompt.first_request(skills=50))
    system = next(m["content"] for m in body["messages"] if m["role"] == "system")
    assert system.count("\n- skill-") == 50 and "Steps..." not in system  # bodies load on request
    assert "skill" in [t["function"]["name"] for t in body["tools"]]
    tokens = bench_prompt.count(json.dumps(body).encode())["bare_turn_prompt_tokens"]
    assert tokens <= bench_prompt.SKILLS_TARGET_TOKENS


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_three_mcp_servers_keep_the_prompt_frugal() -> None:
    body = json.loads(bench_prompt.first_request(mcp_servers=3))
    names = [t["function"]["name"] for t in body["tools"]]
    assert {"files__read_text_file", "git__git_status", "fetch__fetch", "mcp_schema"} <= set(names)
    files = next(t["function"] for t in body["tools"] if t["function"]["name"] == "files__write_file")
    assert files["parameters"] == {"type": "object"}  # 12 tools: schemas on request
    fetch = next(t["function"] for t in body["tools"] if t["function"]["name"] == "fetch__fetch")
    assert "url" in fetch["parameters"]["properties"]  # 1 tool: its schema up front
    tokens = bench_prompt.count(json.dumps(body, separators=(",", ":")).encode())["bare_turn_prompt_tokens"]
    assert tokens <= bench_prompt.TARGET_TOKENS
