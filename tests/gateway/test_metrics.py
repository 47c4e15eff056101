"""/metrics: Prometheus's text format, behind the token, with what happened counted."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hermitcrab.inference.scripted import ScriptedProvider


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_count_turns_and_tokens_and_need_the_token(live_gateway) -> None:
    gw = live_gateway({"embedded": ScriptedProvider("embedded", ["Hello."])})
    assert httpx.get(gw.url + "/metrics", trust_env=False).status_code == 401
    with gw.client() as client:
        client.post("/api/sessions/m/messages", json={"text": "hi"})
        gw.wait_answers("m", 1)
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("hermitcrab_turns_total", (("agent", "main"), ("outcome", "ok")))] == 1
    assert found[("hermitcrab_model_queue_depth", (("model", "embedded"),))] == 0
    assert found[("hermitcrab_resident_memory_bytes", ())] > 10_000_000
    assert ("hermitcrab_approvals_pending", ()) in found and ("hermitcrab_scheduler_lag_seconds", ()) in found
    assert all(name.startswith("hermitcrab_") for name, _ in found)
