"""Usage is recorded per call and summed per session, agent and day; the spend cap refuses
further calls with a clear message."""

from __future__ import annotations

import pytest

from hermitcrab.config.paths import Paths
from hermitcrab.inference.scripted import ScriptedProvider
from tests.conftest import free_port, wait_for

PRICED = """\
version: 1
gateway:
  port: {port}
models:
  embedded:
    provider: scripted
    usd_per_million_output: 1000000   # a dollar a token, to make the cap easy to reach
agents:
  main:
    model: embedded
    spend_cap_usd_per_day: 5
"""


def test_usage_is_summed_and_the_cap_refuses(home: Paths, live_gateway) -> None:
    home.config.write_text(PRICED.format(port=free_port()))
    gw = live_gateway({"embedded": ScriptedProvider("embedded", ["one two three"])})
    with gw.client() as client:
        client.post("/api/sessions/a/messages", json={"text": "first"})
        gw.wait_answers("a", 1)
        client.post("/api/sessions/b/messages", json={"text": "second"})
        gw.wait_answers("b", 1)
        # $6 spent against a $5 cap: the next call is refused before any model runs.
        client.post("/api/sessions/a/messages", json={"text": "third"})
        refused = gw.wait_answers("a", 2)[1]
        by_session = {r["key"]: r for r in client.get("/api/usage", params={"by": "session"}).json()["rows"]}
        today = client.get("/api/usage").json()["today"]
    assert refused["kind"] == "turn.failed"
    assert "has spent $6.0000 today, its cap is $5.0000" in refused["data"]["error"]
    assert {k: (r["calls"], r["completion_tokens"], r["cost_usd"]) for k, r in by_session.items()} == {
        "a": (1, 3, 3.0),
        "b": (1, 3, 3.0),
    }
    assert today == {
        "spent_usd": {"main": 6.0},
        "caps_usd": {"main": 5.0},
        "total_usd": 6.0,
        "total_cap_usd": None,
    }


def test_api_completions_count_too(home: Paths, live_gateway) -> None:
    import openai

    home.config.write_text(PRICED.format(port=free_port()))
    gw = live_gateway({"embedded": ScriptedProvider("embedded", ["a b"])})
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.token, max_retries=0)
    client.chat.completions.create(model="main", messages=[{"role": "user", "content": "hi"}])
    with gw.client() as http:
        rows = http.get("/api/usage", params={"by": "agent"}).json()["rows"]
    assert [(r["key"], r["calls"], r["cost_usd"]) for r in rows] == [("main", 1, 2.0)]


TWO_AGENTS_ONE_BUDGET = """\
version: 1
gateway:
  port: {port}
models:
  embedded:
    provider: scripted
    usd_per_million_output: 1000000
agents:
  main:
    model: embedded
  helper:
    model: embedded
routing:
  spend_cap_usd_per_day: 5
"""


def test_the_daily_cap_over_all_agents_refuses_every_agent(home: Paths, live_gateway) -> None:
    import openai

    home.config.write_text(TWO_AGENTS_ONE_BUDGET.format(port=free_port()))
    gw = live_gateway({"embedded": ScriptedProvider("embedded", ["one two three"])})
    client = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.token, max_retries=0)
    ask = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="main", messages=ask)  # $3
    client.chat.completions.create(model="helper", messages=ask)  # $6 in all: over the $5 cap
    for agent in ("main", "helper"):
        with pytest.raises(openai.APIStatusError, match=r"all agents together have spent \$6\.0000 today"):
            client.chat.completions.create(model=agent, messages=ask)
    with gw.client() as http:
        today = http.get("/api/usage").json()["today"]
    assert (today["total_usd"], today["total_cap_usd"]) == (6.0, 5.0)


def test_the_audit_log_keeps_only_its_retention(live_gateway, home) -> None:
    import time as clock

    from hermitcrab.store import AuditEntry, Store

    store = Store(home.state_db)
    old = clock.time() - 100 * 86400
    store.audit.record(AuditEntry(actor="test", action="exec", outcome="ok", ts=old))
    store.audit.record(AuditEntry(actor="test", action="exec", outcome="ok"))
    store.close()
    home.config.write_text(
        home.config.read_text().replace("gateway:\n", "gateway:\n  audit_retention_days: 30\n", 1)
    )
    gw = live_gateway()

    def left() -> list[float] | None:
        kept = [e.ts for e in gw.gateway.db.audit.entries(limit=1000) if e.actor == "test"]
        return kept if len(kept) == 1 else None

    (kept,) = wait_for(left, what="the old entry to be dropped")
    assert kept > old
