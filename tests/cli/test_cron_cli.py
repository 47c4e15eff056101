"""`hermitcrab cron` against the real daemon."""

from __future__ import annotations

import json

from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc
from tests.conftest import wait_for


def test_cron_add_list_run_now_history_remove(daemon_home: Paths) -> None:
    assert hc(daemon_home, "up").returncode == 0
    try:
        wait_for(
            lambda: json.loads(hc(daemon_home, "status", "--json").stdout).get("scheduler"), what="scheduler"
        )
        bad = hc(daemon_home, "cron", "add", "hi", "--cron", "every day")
        assert bad.returncode == 1 and "not a 5-field cron expression" in bad.stderr
        added = hc(
            daemon_home, "cron", "add", "say hi", "--cron", "0 9 * * 1-5", "--tz", "Europe/Paris", "--json"
        )
        assert added.returncode == 0, added.stderr
        job = json.loads(added.stdout)
        assert job["cron"] == "0 9 * * 1-5" and job["tz"] == "Europe/Paris"
        status = json.loads(hc(daemon_home, "status", "--json").stdout)
        assert status["jobs_next"][0]["id"] == job["id"] and status["spend_today_usd"] == 0
        assert f"job {job['id']}" in hc(daemon_home, "status").stdout
        listed = hc(daemon_home, "cron", "list")
        assert "cron '0 9 * * 1-5' (Europe/Paris)" in listed.stdout
        ran = json.loads(hc(daemon_home, "cron", "run-now", str(job["id"]), "--json").stdout)
        assert ran["outcome"] == "submitted" and ran["session_id"] == f"job-{job['id']}"
        history = json.loads(hc(daemon_home, "cron", "history", str(job["id"]), "--json").stdout)
        assert [r["outcome"] for r in history["runs"]] == ["submitted"]
        assert hc(daemon_home, "cron", "remove", str(job["id"])).returncode == 0
        assert json.loads(hc(daemon_home, "cron", "list", "--json").stdout)["jobs"] == []
        gone = hc(daemon_home, "cron", "run-now", str(job["id"]))
        assert gone.returncode == 1 and f"no scheduled job {job['id']}" in gone.stderr
    finally:
        hc(daemon_home, "down")
