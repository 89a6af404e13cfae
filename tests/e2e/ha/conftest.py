"""Fixtures of the tests on the replicated data layer (values/local-ha.yaml): one release,
the heaviest of the tier, shared by the fault campaign and the failover tests, installed
when the first of them starts and removed once the last has run, so that the rest of the
tier does not share the nodes with it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import (
    APP_SERVICE,
    client_pod,
    grant_kafka_topic,
    install_values,
    kubectl_json,
)
from tests.e2e.releases import installed_release

# The topic probes/data_layer_probe.py produces to (the probe runs in a pod, from its text).
PROBE_TOPIC = "e2e.probe"


@pytest.fixture(scope="package")
def ha_release(cluster: list[str]) -> Iterator[str]:
    """The local profile with the replicated data layer (values/local-ha.yaml), shared by
    the fault campaign and the failover tests: installed once, it is the heaviest.
    A fixed number of app pods (the HPA's scale-ins would be faults of their own) and a
    10 s saga lease, so that a frozen pod's lease and locks expire before its liveness
    probe would restart it, and the fencing path is what the freeze exercises.
    SAGA_E2E_HA_NAMESPACE names one installed so before (kept with SAGA_E2E_KEEP=1) to
    run the tests against it again instead."""
    values = [
        *install_values("local-ha.yaml"),
        "--set", "autoscaling.enabled=false", "--set", "autoscaling.backlog.enabled=false",
        "--set", "config.sagaLeaseSeconds=10",
        # The campaign judges the saga path; the job workers have tests of their own.
        "--set", "jobs.enabled=false",
    ]  # fmt: skip
    kept = os.environ.get("SAGA_E2E_HA_NAMESPACE") or None
    with installed_release(None if kept else values, namespace=kept, prefix="saga-ha") as namespace:
        yield namespace


@pytest.fixture(scope="package")
def ha_client(ha_release: str) -> str:
    """A pod outside the release with the app's image, on the control plane, which no fault
    test stops."""
    image = kubectl_json("get", "deployment", "-n", ha_release, APP_SERVICE)["spec"]["template"][
        "spec"
    ]["containers"][0]["image"]
    return client_pod(ha_release, "ha-client", image, on_control_plane=True)


@pytest.fixture(scope="package")
def probe(ha_release: str) -> str:
    """A pod outside the release with the app's image, environment and data-layer client
    labels, on the control plane."""
    app = kubectl_json("get", "deployment", "-n", ha_release, APP_SERVICE)["spec"]["template"]
    container = app["spec"]["containers"][0]
    labels = {k: v for k, v in app["metadata"]["labels"].items() if k.startswith("saga-stack.io/")}
    # The probe produces to a topic of its own as the app's Kafka user, whose ACLs the chart
    # limits to the app's topics.
    config = kubectl_json("get", "configmap", "-n", ha_release, APP_SERVICE)["data"]
    grant_kafka_topic(ha_release, config["KAFKA_SASL_USERNAME"], PROBE_TOPIC)
    return client_pod(
        ha_release,
        "ha-probe",
        container["image"],
        labels,
        env=container.get("env", []),
        env_from=container.get("envFrom", []),
        on_control_plane=True,
    )
