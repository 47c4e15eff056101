"""The crash test, small: the real daemon killed with SIGKILL at random moments while
messages, tool calls, approvals and a scheduled job are in flight (`hermitcrab bench
chaos` runs the same with more kills). Nothing may be lost or done twice."""

from __future__ import annotations

from hermitcrab.cli.bench_chaos import run


def test_kill_9_loses_nothing_and_doubles_nothing() -> None:
    results = run(kills=4, per_round=3, seed=11)
    assert results["kills"] == 4 and results["messages"] == 12
    assert results["store_integrity"] == "ok"
    harm = ("lost", "duplicated_side_effects", "duplicated_replies", "missed_slots", "leftover_processes")
    assert {k: results[k] for k in harm} == dict.fromkeys(harm, 0), results
    assert results["replies"] == 12 and results["job_runs"] > 0
