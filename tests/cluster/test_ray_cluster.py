"""`hermitcrab cluster up|status|down` against real Ray: a head started on this machine (its
dashboard and job API off) whose node can host sandboxes; a three-node cluster where the
node without bubblewrap is named, with why; doctor's warning that Ray's control port
listens on every interface; a cluster that does not answer, said plainly."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest

from hermitcrab.cluster.ray_cluster import temp_dir
from hermitcrab.config.paths import Paths
from tests.cli.conftest import hc
from tests.conftest import free_port

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'hermitcrab[cluster]')")


@pytest.fixture
def head(home: Paths) -> Iterator[Paths]:
    home.config.write_text(home.config.read_text() + f"cluster:\n  port: {free_port()}\n")
    yield home
    hc(home, "cluster", "down", timeout=180)
    shutil.rmtree(temp_dir(home), ignore_errors=True)


def test_a_head_here_hosts_sandboxes_and_doctor_warns(head: Paths) -> None:
    started = hc(head, "cluster", "up", "--json", timeout=300)
    assert started.returncode == 0, started.stderr
    where = json.loads(started.stdout)["address"]
    shown = hc(head, "cluster", "status", "--json", timeout=300)
    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert status["address"] == where and status["agents"] == []
    (node,) = status["nodes"]
    assert node["alive"] and node["sandbox"] is True and node["resources"]["CPU"] >= 1
    report = json.loads(hc(head, "doctor", "--json").stdout)
    ray_check = next(c for c in report["checks"] if c["name"] == "ray cluster")
    assert ray_check["warning"] and "every interface" in ray_check["detail"]
    again = hc(head, "cluster", "up")
    assert again.returncode != 0 and "already listens" in again.stderr

    assert hc(head, "cluster", "down", timeout=180).returncode == 0
    gone = hc(head, "cluster", "status")
    assert gone.returncode != 0 and "no Ray cluster answers" in gone.stderr


def test_a_node_without_bubblewrap_is_named_with_why(home: Paths) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.add_node(num_cpus=1, env_vars={"PATH": "/nonexistent"})  # no bwrap to be found
        home.config.write_text(home.config.read_text() + f"cluster:\n  address: '{cluster.address}'\n")
        shown = hc(home, "cluster", "status", "--json", timeout=300)
        assert shown.returncode == 0, shown.stderr
        nodes = json.loads(shown.stdout)["nodes"]
        assert len(nodes) == 3 and all(n["alive"] for n in nodes)
        assert sorted(n["sandbox"] for n in nodes) == [False, True, True]
        (lacking,) = [n for n in nodes if not n["sandbox"]]
        assert "bubblewrap is not installed there" in lacking["why"]
        text = hc(home, "cluster", "status", timeout=300).stdout
        assert "cannot host agents: bubblewrap is not installed there" in text
    finally:
        cluster.shutdown()
