"""A wildcard terminate rule can meet endless names: the CA keeps a bounded set of leaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermitcrab.egress import ca as ca_module
from hermitcrab.egress.ca import SandboxCA


def test_leaf_contexts_are_bounded_least_recently_used_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ca_module, "MAX_LEAVES", 2)
    ca = SandboxCA(tmp_path, "box")
    first = ca.server_context("a.example.org")
    ca.server_context("b.example.org")
    assert ca.server_context("a.example.org") is first  # used again: now the most recent
    ca.server_context("c.example.org")  # b goes, not a
    assert list(ca._contexts) == ["a.example.org", "c.example.org"]
