"""ci/cluster/kind-config.sh: the cluster both modes create with `kind create cluster`."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kind_config import kind_config, run_kind_config


def patches(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["kind"]: p for p in map(yaml.safe_load, config.get("kubeadmConfigPatches", []))}


def test_both_modes_make_one_control_plane_and_three_workers_by_default() -> None:
    for args in ([], ["--offline"]):
        config = kind_config(*args)
        assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
        roles = [n["role"] for n in config["nodes"]]
        assert roles == ["control-plane", "worker", "worker", "worker"]


def test_workers_sets_the_number_of_worker_nodes() -> None:
    roles = [n["role"] for n in kind_config("--offline", "--workers", "1")["nodes"]]
    assert roles == ["control-plane", "worker"]


def test_offline_has_no_default_cni_and_never_pulls() -> None:
    config = kind_config("--offline")
    # kindnet's image is not built here: simple-cni.sh and kube-router take its place
    assert config["networking"]["disableDefaultCNI"] is True
    found = patches(config)
    for kind in ("InitConfiguration", "JoinConfiguration"):
        assert found[kind]["nodeRegistration"]["imagePullPolicy"] == "Never"
    assert found["KubeletConfiguration"]["failCgroupV1"] is False


def test_online_keeps_kinds_own_cni_and_pulls() -> None:
    config = kind_config()
    assert "disableDefaultCNI" not in config["networking"]
    assert patches(config) == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "two"], "--workers must be a number, not 'two'"),
        (["--nodes"], "unknown argument: --nodes"),
    ],
)
def test_bad_arguments_fail_with_a_message_and_print_no_config(
    args: list[str], message: str
) -> None:
    done = run_kind_config(*args)
    assert done.returncode != 0
    assert message in done.stderr
    assert done.stdout == ""
