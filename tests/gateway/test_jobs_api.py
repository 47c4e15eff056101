"""Scheduled jobs through the real gateway: a job's turn is answered by the model at the
queue's lower priority, run-now and history, removal, and a heartbeat that calls no model
while HEARTBEAT.md asks for nothing."""

from __future__ import annotations

import time

from hermitcrab.inference.scripted import ScriptedProvider
from hermitcrab.scheduler import ManualClock
from tests.conftest import wait_for

HOUR = 3600.0


def test_a_job_runs_as_a_background_turn_and_keeps_a_history(live_gateway) -> None:
    provider = ScriptedProvider("embedded", ["Checked: all quiet."])
    clock = ManualClock(time.time())
    gw = live_gateway({"embedded": provider}, clock=clock)
    with gw.client() as client:
        wait_for(lambda: client.get("/api/status").json()["scheduler"], what="the scheduler to start")
        made = client.post("/api/jobs", json={"text": "check the backups", "every": "1h", "name": "backups"})
        assert made.status_code == 201, made.text
        job = made.json()["job"]
        assert client.post("/api/jobs", json={"text": "x", "cron": "61 * * * *"}).status_code == 400
        assert (
            client.post("/api/jobs", json={"text": "x", "every": "1h", "cron": "0 * * * *"}).status_code
            == 400
        )
        gw.call(clock.advance, HOUR + 1)
        [reply] = gw.wait_answers(f"job-{job['id']}", 1)
        assert reply["data"]["text"] == "Checked: all quiet."
        [message] = [e for e in gw.events(f"job-{job['id']}") if e["kind"] == "message"]
        assert message["data"]["priority"] == "background" and message["data"]["source"] == "scheduler"
        now = client.post(f"/api/jobs/{job['id']}/run").json()
        assert now["outcome"] == "submitted"
        gw.wait_answers(f"job-{job['id']}", 2)
        runs = client.get("/api/jobs/history", params={"job": job["id"]}).json()["runs"]
        assert [r["outcome"] for r in runs] == ["submitted", "submitted"]
        assert client.get("/api/jobs").json()["jobs"][0]["runs"] == 2
        assert client.delete(f"/api/jobs/{job['id']}").status_code == 200
        assert client.get("/api/jobs").json()["jobs"] == []
        gw.call(clock.advance, 3 * HOUR)
        time.sleep(0.2)
    assert len(provider.requests) == 2  # nothing ran after its removal


def test_an_empty_heartbeat_costs_no_model_call(live_gateway, home) -> None:
    text = home.config.read_text().replace(
        "    model: embedded\n", "    model: embedded\n    heartbeat:\n      every_minutes: 10\n", 1
    )
    home.config.write_text(text)
    (home.workspace / "HEARTBEAT.md").write_text("# Heartbeat\n<!-- nothing yet -->\n")
    provider = ScriptedProvider("embedded", ["HEARTBEAT_OK"])
    clock = ManualClock(time.time())
    gw = live_gateway({"embedded": provider}, clock=clock)
    with gw.client() as client:
        wait_for(lambda: client.get("/api/jobs").json().get("jobs"), what="the heartbeat job")
        gw.call(clock.advance, 11 * 60)
        runs = wait_for(lambda: client.get("/api/jobs/history").json()["runs"], what="the heartbeat's run")
    assert runs[0]["outcome"] == "nothing_to_do" and provider.requests == []
