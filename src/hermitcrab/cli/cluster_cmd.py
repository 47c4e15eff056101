"""`hermitcrab cluster up|status|down`."""

from __future__ import annotations

from hermitcrab.cli.output import fail, print_json
from hermitcrab.config.loader import load_config
from hermitcrab.config.paths import Paths
from hermitcrab.errors import HermitCrabError


def up(json_output: bool) -> None:
    from hermitcrab.cluster import ray_cluster

    paths = Paths.from_env()
    try:
        where = ray_cluster.up(paths, load_config(paths.config))
    except HermitCrabError as exc:
        fail(str(exc))
    if json_output:
        print_json({"address": where})
    else:
        print(f"Ray is up at {where} (dashboard and job API off). Next: `hermitcrab cluster status`")


def status(json_output: bool) -> None:
    from hermitcrab.cluster import ray_cluster

    paths = Paths.from_env()
    try:
        found = ray_cluster.status(load_config(paths.config))
    except HermitCrabError as exc:
        fail(str(exc))
    if json_output:
        print_json(found)
        return
    print(f"Ray cluster at {found['address']}: {sum(n['alive'] for n in found['nodes'])} nodes alive")
    for node in found["nodes"]:
        can = "can host agents" if node["sandbox"] else f"cannot host agents: {node['why']}"
        cpus = node["resources"].get("CPU", 0)
        alive = "alive" if node["alive"] else "down"
        print(f"  {node['id'][:12]}  {node['address']}  {alive}, {cpus:g} CPUs, {can}")
    print(f"agents: {', '.join(found['agents']) or 'none placed yet'}")


def down() -> None:
    from hermitcrab.cluster import ray_cluster

    try:
        ray_cluster.down()
    except HermitCrabError as exc:
        fail(str(exc))
    print("Ray stopped on this machine.")
