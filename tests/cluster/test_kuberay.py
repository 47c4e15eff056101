"""The KubeRay manifests (deploy/kuberay/): no Kubernetes runs here, so what can be checked
is checked: they parse; the head runs the gateway and only the gateway is a Service; Ray's
dashboard (its job API) is off; workers offer the sandbox resource and allow the user
namespaces bubblewrap needs; the image installs bubblewrap."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

DEPLOY = Path(__file__).parents[2] / "deploy" / "kuberay"


def test_the_manifests_hold_together() -> None:
    cluster, service = list(YAML(typ="safe").load_all((DEPLOY / "raycluster.yaml").read_text()))
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["include-dashboard"] == "false"
    (container,) = head["template"]["spec"]["containers"]
    assert {"name": "gateway", "containerPort": 18790} in container["ports"]
    assert "hermitcrab up" in " ".join(container["lifecycle"]["postStart"]["exec"]["command"])
    labels = head["template"]["metadata"]["labels"]
    assert service["kind"] == "Service" and service["spec"]["selector"] == labels
    assert [p["port"] for p in service["spec"]["ports"]] == [18790]  # no Ray port exposed
    (workers,) = cluster["spec"]["workerGroupSpecs"]
    assert "sandbox" in workers["rayStartParams"]["resources"]
    (worker,) = workers["template"]["spec"]["containers"]
    assert worker["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert "bubblewrap" in (DEPLOY / "Dockerfile").read_text()
