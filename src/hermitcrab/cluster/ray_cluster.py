"""A Ray cluster for HermitCrab's agents: started here (a head node) or joined, its nodes
shown with whether each can host an agent's sandboxes (bubblewrap there and working), and
stopped. Ray runs with its dashboard, and so its job API (which runs anyone's code), off.

Ray's own control ports (GCS, raylet) listen on every interface, whatever the node's
address: Ray has no loopback-only mode, and trusts its network. `doctor` says so."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from hermitcrab.config.paths import Paths
from hermitcrab.errors import HermitCrabError

NAMESPACE = "hermitcrab"
AGENT_PREFIX = "agent-"
PROBE_TIMEOUT_S = 60.0


class ClusterError(HermitCrabError):
    pass


def _ray_cli() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if found is None:
        raise ClusterError("Ray is not installed. fix: pip install 'hermitcrab[cluster]'")
    return found


def temp_dir(paths: Paths) -> str:
    """Ray's sockets live under it: short, so their paths stay under the kernel's limit."""
    return f"/tmp/ray-hc-{hashlib.sha256(str(paths.home).encode()).hexdigest()[:8]}"


def address(config: Any) -> str:
    return config.cluster.address or f"127.0.0.1:{config.cluster.port}"


def _answers(where: str, timeout: float = 3.0) -> bool:
    host, _, port = where.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def up(paths: Paths, config: Any) -> str:
    """Start a head node here, or join the configured cluster; the cluster's address."""
    cluster = config.cluster
    argv = [_ray_cli(), "start", "--disable-usage-stats", f"--temp-dir={temp_dir(paths)}"]
    if cluster.address is None:
        if _answers(address(config), 1.0):
            raise ClusterError(
                f"something already listens on {address(config)}. fix: `hermitcrab cluster status`"
            )
        argv += [
            "--head",
            f"--port={cluster.port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
        ]
    else:
        if not _answers(cluster.address):
            raise ClusterError(
                f"no Ray cluster answers at {cluster.address}. fix: cluster.address, or start its head"
            )
        argv += [f"--address={cluster.address}", "--node-ip-address=127.0.0.1"]
    if cluster.labels:
        argv.append(f"--resources={json.dumps(dict.fromkeys(cluster.labels, 1))}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ClusterError("`ray start` failed: " + " / ".join(said))
    return address(config)


def down() -> None:
    """Stop the Ray processes of this machine (Ray's `ray stop`)."""
    subprocess.run([_ray_cli(), "stop"], capture_output=True, text=True, timeout=120)


def _probe() -> dict[str, Any]:
    """On a node: can it host an agent's sandboxes?"""
    import shutil as sh
    import subprocess as sp

    bwrap = sh.which("bwrap")
    if bwrap is None:
        return {"sandbox": False, "why": "bubblewrap is not installed there (apt-get install bubblewrap)"}
    ran = sp.run([bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                 capture_output=True, text=True, timeout=30)  # fmt: skip
    if ran.returncode != 0:
        return {"sandbox": False, "why": f"bubblewrap does not run there: {ran.stderr.strip()[:200]}"}
    return {"sandbox": True, "why": None}


def status(config: Any) -> dict[str, Any]:
    """The cluster's nodes (alive, resources, whether each can host sandboxes) and the
    agents placed on it."""
    where = address(config)
    if not _answers(where):
        raise ClusterError(f"no Ray cluster answers at {where}. fix: `hermitcrab cluster up`")
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=where, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
    try:
        probe = ray.remote(num_cpus=0)(_probe)
        nodes, pending = [], {}
        for node in ray.nodes():
            entry = {
                "id": node["NodeID"],
                "address": node.get("NodeManagerAddress"),
                "alive": bool(node.get("Alive")),
                "resources": {
                    k: v for k, v in (node.get("Resources") or {}).items() if not k.startswith("node:")
                },
                "sandbox": None,
                "why": "the node is down" if not node.get("Alive") else None,
            }
            nodes.append(entry)
            if entry["alive"]:
                strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
                pending[node["NodeID"]] = probe.options(scheduling_strategy=strategy).remote()
        for entry in nodes:
            ref = pending.get(entry["id"])
            if ref is None:
                continue
            try:
                entry.update(ray.get(ref, timeout=PROBE_TIMEOUT_S))
            except Exception as exc:  # a node that cannot run the probe cannot host an agent
                entry.update({"sandbox": False, "why": f"the probe did not run there: {type(exc).__name__}"})
        agents = sorted(n for n in ray.util.list_named_actors() if n.startswith(AGENT_PREFIX))
        return {"address": where, "nodes": nodes, "agents": agents}
    finally:
        ray.shutdown()


def exposure(config: Any) -> str | None:
    """What of a Ray head here listens beyond loopback (read from /proc/net/tcp*), or None."""
    port = config.cluster.port
    wide = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            host, _, hexport = local.rpartition(":")
            if state == "0A" and int(hexport, 16) == port and set(host) <= {"0"}:  # LISTEN on any
                wide.append(f"*:{port}")
    return ", ".join(sorted(set(wide))) or None
