"""The policy file is watched, not polled: a change (a save by rename included) is seen,
other files of the folder are not, and nothing wakes while nothing changes."""

from __future__ import annotations

import asyncio
import os

import pytest

from hermitcrab.runtime import watch as watch_module


def test_a_change_to_the_file_is_seen_and_only_that_file(tmp_path, monkeypatch) -> None:
    async def never(*args: object) -> None:
        raise AssertionError("polled: inotify should have been used")

    monkeypatch.setattr(watch_module, "_poll", never)
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\n")
    seen: list[str] = []

    async def scenario() -> None:
        watcher = asyncio.ensure_future(
            watch_module.watch(policy, lambda: seen.append(policy.read_text()), 60)
        )
        await asyncio.sleep(0)
        assert seen == ["version: 1\n"]  # the first pass, at once
        (tmp_path / "other.txt").write_text("noise")
        await asyncio.sleep(0.2)
        assert len(seen) == 1
        staged = tmp_path / ".policy.yaml.tmp"
        staged.write_text("version: 1\n# saved by rename\n")
        os.replace(staged, policy)
        for _ in range(200):
            if seen[-1].endswith("# saved by rename\n"):
                break
            await asyncio.sleep(0.01)
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher

    asyncio.run(scenario())
    assert seen[-1] == "version: 1\n# saved by rename\n"


def test_without_inotify_it_polls(tmp_path, monkeypatch) -> None:
    def refuse(folder: object) -> int:
        raise OSError(38, "inotify_init1 failed")

    monkeypatch.setattr(watch_module, "_inotify", refuse)
    policy = tmp_path / "policy.yaml"
    policy.write_text("a")
    seen: list[str] = []

    async def scenario() -> None:
        watcher = asyncio.ensure_future(
            watch_module.watch(policy, lambda: seen.append(policy.read_text()), 0.01)
        )
        await asyncio.sleep(0.05)
        policy.write_text("bb")
        for _ in range(200):
            if seen[-1] == "bb":
                break
            await asyncio.sleep(0.01)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)

    asyncio.run(scenario())
    assert seen[0] == "a" and seen[-1] == "bb"
