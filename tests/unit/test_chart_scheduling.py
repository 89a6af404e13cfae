"""Where app pods run and how fast they leave a lost node: short not-ready/unreachable
tolerations (the cluster's default keeps a dead node's pods for 300 s) and a node spread
that is a rule, counting only nodes the pods may run on."""

from __future__ import annotations

from typing import Any

import k8s_openapi
from helm import PROFILES, find, one, render

LOSS_KEYS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def pod_spec(values: dict[str, Any] | None = None, files: list[str] | None = None) -> Any:
    deployment = one(render(files or (), values), "Deployment", "saga-saga-stack")
    return deployment["spec"]["template"]["spec"]


def loss_tolerations(spec: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t for t in spec.get("tolerations", []) if t.get("key") in LOSS_KEYS}


def test_app_pods_leave_a_lost_node_after_30_seconds_by_default(k8s_schemas: list[str]) -> None:
    spec = pod_spec()
    assert loss_tolerations(spec) == {
        key: {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}
        for key in LOSS_KEYS
    }
    assert k8s_openapi.schema_errors(find(render(), "Deployment"), k8s_schemas) == []


def test_zero_leaves_the_clusters_default() -> None:
    assert "tolerations" not in pod_spec({"nodeLossTolerationSeconds": 0})


def test_users_tolerations_are_kept_and_their_own_loss_toleration_wins() -> None:
    mine = [
        {"key": "dedicated", "operator": "Equal", "value": "saga", "effect": "NoSchedule"},
        {"key": LOSS_KEYS[1], "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
    ]
    spec = pod_spec({"tolerations": mine, "nodeLossTolerationSeconds": 45})
    assert spec["tolerations"][:2] == mine
    assert loss_tolerations(spec)[LOSS_KEYS[1]]["tolerationSeconds"] == 5
    assert loss_tolerations(spec)[LOSS_KEYS[0]]["tolerationSeconds"] == 45
    assert len(spec["tolerations"]) == 3


def test_node_spread_is_a_rule_that_ignores_nodes_the_pods_cannot_use() -> None:
    by_key = {c["topologyKey"]: c for c in pod_spec()["topologySpreadConstraints"]}
    node = by_key["kubernetes.io/hostname"]
    assert node["whenUnsatisfiable"] == "DoNotSchedule"
    # A control plane or a lost node (tainted) counted as an empty domain would leave
    # pods Pending under a hard rule.
    assert node["nodeTaintsPolicy"] == "Honor"
    assert by_key["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"


def test_every_profile_keeps_the_short_loss_tolerations() -> None:
    for profile in PROFILES:
        spec = pod_spec(files=[str(profile)])
        assert set(loss_tolerations(spec)) == set(LOSS_KEYS), profile.name
