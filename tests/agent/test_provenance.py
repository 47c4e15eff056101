"""Which workspace content a turn may trust, checked on real files and a real store."""

from __future__ import annotations

import subprocess

from hermitcrab.agent.provenance import record_write, workspace_taint
from hermitcrab.store import Store


def test_the_agents_own_untainted_files_are_trusted_until_they_change(tmp_path) -> None:
    store, workspace = Store(tmp_path / "state.db"), tmp_path / "w"
    workspace.mkdir()
    (workspace / "AGENTS.md").write_text("rules")  # the owner's persona: trusted until written
    (workspace / "notes.md").write_text("mine")
    record_write(store, "main", workspace, "notes.md", None, "s")
    assert workspace_taint(store, "main", workspace) is None
    (workspace / "notes.md").write_text("changed by a command")
    assert (
        workspace_taint(store, "main", workspace)
        == "the workspace holds notes.md (changed since the agent wrote it)"
    )
    record_write(store, "main", workspace, "notes.md", "https://evil.example", "s")
    assert "written while reading https://evil.example" in workspace_taint(store, "main", workspace)
    store.close()


def test_a_tree_deeper_than_pythons_recursion_limit_is_checked(tmp_path) -> None:
    """os.walk recurses (Python 3.11): a turn could make every later command fail."""
    store, workspace = Store(tmp_path / "state.db"), tmp_path / "w"
    folder = workspace
    for _ in range(1200):
        folder = folder / "a"
        folder.mkdir(parents=folder.parent == workspace)
    (folder / "x").write_text("deep")
    try:
        assert "(not written by the agent)" in workspace_taint(store, "main", workspace)
    finally:
        subprocess.run(["rm", "-rf", str(workspace / "a")], check=True)  # rmtree recurses too
        store.close()
