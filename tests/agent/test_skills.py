"""Skills as OpenClaw writes them: loaded from the workspace, the home and the bundled
folder in that order, hidden where the machine lacks what they need, offered to the model
by name and description only, and loaded whole by the `skill` tool."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hermitcrab.agent.context import Persona
from hermitcrab.agent.skill_tool import SkillArgs, SkillTool
from hermitcrab.agent.skills import BUNDLED, Shelf, load_skill, unmet
from hermitcrab.store import Store
from hermitcrab.tools.base import ToolContext

# As OpenClaw's docs show it: the metadata a single line of JSON.
WEATHER = """---
name: weather
description: Get the current weather and forecasts for a place.
metadata: {"openclaw": {"emoji": "🌤️", "requires": {"bins": ["sh"]}}}
---

# Weather

Run `scripts/forecast.sh CITY` and read its output to the user.
"""
NEEDS_TOOL = """---
name: todoist
description: Manage tasks via the Todoist API.
metadata:
  openclaw:
    requires:
      env: [TODOIST_API_KEY]
      bins: [definitely-not-installed-x9]
---
Use the API.
"""


@pytest.fixture
def tool_ctx(tmp_path: Path) -> Iterator[Callable[[Path], ToolContext]]:
    """A context for the skill tool: a real store (for the workspace's file marks), no sandbox."""
    store = Store(tmp_path / "state.db")

    def make(workspace: Path) -> ToolContext:
        return ToolContext("main", "s", "agent", None, store, workspace, "agent:main")  # type: ignore[arg-type]

    yield make
    store.close()


def write_skill(folder: Path, text: str, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(text)
    for name, content in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return folder


def test_openclaw_front_matter_and_requirements(tmp_path: Path) -> None:
    weather = load_skill(write_skill(tmp_path / "weather", WEATHER), "workspace")
    assert (weather.name, weather.usable) == ("weather", True)
    assert weather.description == "Get the current weather and forecasts for a place."
    todo = load_skill(write_skill(tmp_path / "todoist", NEEDS_TOOL), "home")
    assert todo.missing == (
        "the program definitely-not-installed-x9",
        "the environment variable TODOIST_API_KEY",
    )
    front = {"metadata": {"openclaw": {"requires": {"anyBins": ["nope-1", "sh"]}, "os": ["darwin", "win32"]}}}
    assert unmet(front) == (() if sys.platform == "darwin" else ("an OS among darwin, win32",))
    assert unmet({"metadata": {"clawdbot": {"requires": {"env": ["K"]}}}}, {"K": "v"}) == ()


def test_sources_in_order_hidden_ones_kept_out_of_the_prompt(tmp_path: Path) -> None:
    workspace, home = tmp_path / "ws", tmp_path / "home-skills"
    write_skill(workspace / "skills" / "weather", WEATHER)
    write_skill(home / "weather", WEATHER.replace("current weather", "HOME weather"))
    write_skill(home / "todoist", NEEDS_TOOL)
    (home / "broken").mkdir()
    (home / "broken" / "SKILL.md").write_text("---\nname: [unclosed\n---\nbody")
    shelf = Shelf.for_agent(workspace, home)
    names = {s.name: s for s in shelf.scan()}
    assert names["weather"].source == "workspace"  # the workspace's wins
    assert not names["todoist"].usable and "write-a-skill" in names  # and the bundled one
    assert any("broken" in p for p in shelf.problems)
    prompt = Persona(workspace, shelf).system_prompt()
    assert "- weather: Get the current weather" in prompt and "HOME weather" not in prompt
    assert "todoist" not in prompt and prompt == Persona(workspace, shelf).system_prompt()


def test_the_prompt_follows_edits_and_stays_byte_identical_between(tmp_path: Path) -> None:
    shelf = Shelf([("home", tmp_path)])
    persona = Persona(tmp_path / "ws", shelf)
    assert persona.system_prompt() == ""
    write_skill(tmp_path / "weather", WEATHER)
    first = persona.system_prompt()
    assert "weather" in first and persona.system_prompt() == first
    (tmp_path / "weather" / "SKILL.md").write_text(WEATHER.replace("forecasts", "radar"))
    assert "radar" in persona.system_prompt()


def test_fifty_skills_cost_little(tmp_path: Path) -> None:
    for n in range(50):
        write_skill(
            tmp_path / f"s{n}",
            f"---\nname: skill-{n}\ndescription: Does task number {n} well.\n---\nLong body " * 1,
        )
    section = Shelf([("home", tmp_path)]).prompt_section()
    assert section.count("\n- skill-") == 50 and "Long body" not in section


def test_the_tool_loads_a_body_and_a_file_beside_it_but_nothing_outside(tmp_path: Path, tool_ctx) -> None:
    home = tmp_path / "home"
    write_skill(home / "weather", WEATHER, {"scripts/forecast.sh": "echo sunny\n"})
    (tmp_path / "secret.txt").write_text("top secret")
    (home / "weather" / "link").symlink_to(tmp_path / "secret.txt")
    tool = SkillTool(Shelf([("home", home)]))
    ctx = tool_ctx(tmp_path / "ws")
    body = asyncio.run(tool.run(SkillArgs(name="weather"), ctx))
    assert body.content.startswith("# Weather") and "scripts/forecast.sh" in body.content
    assert body.taint is None and "name: weather" not in body.content  # the front matter is for us
    script = asyncio.run(tool.run(SkillArgs(name="weather", file="scripts/forecast.sh"), ctx))
    assert script.content == "echo sunny\n"
    for bad in ("../../secret.txt", "/etc/passwd", "link"):
        refused = asyncio.run(tool.run(SkillArgs(name="weather", file=bad), ctx))
        assert refused.error and "top secret" not in refused.content, bad
    unknown = asyncio.run(tool.run(SkillArgs(name="nope"), ctx))
    assert unknown.error and "weather" in unknown.content


def test_a_workspace_skill_the_agent_did_not_write_taints(tmp_path: Path, tool_ctx) -> None:
    workspace = tmp_path / "ws"
    write_skill(workspace / "skills" / "weather", WEATHER)
    tool = SkillTool(Shelf.for_agent(workspace, tmp_path / "none"))
    loaded = asyncio.run(tool.run(SkillArgs(name="weather"), tool_ctx(workspace)))
    assert loaded.taint == "file skills/weather/SKILL.md (not written by the agent)"


def test_the_bundled_skill_loads() -> None:
    skill = load_skill(BUNDLED / "write-a-skill", "bundled")
    assert skill.usable and skill.name == "write-a-skill"
