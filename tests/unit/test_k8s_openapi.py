"""The offline Kubernetes schema validator catches what the API server would reject."""

from __future__ import annotations

import copy
import re
import subprocess
from typing import Any

import k8s_openapi
import pytest
from k8s_openapi import UnknownKind, load_validator, validate

VERSIONS = k8s_openapi.schema_versions()


@pytest.fixture(scope="module", autouse=True)
def _schemas(k8s_schemas: list[str]) -> None:
    """Every test here needs the cached schemas."""


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "saga-api",
            "namespace": "saga",
            "creationTimestamp": None,  # what `helm template` can leave behind
            "labels": {"app.kubernetes.io/name": "saga-api"},
            "annotations": {"checksum/config": "abc"},
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "saga-api"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "saga-api"}},
                "spec": {
                    "serviceAccountName": "saga-api",
                    "securityContext": {"runAsNonRoot": True, "fsGroup": 1000},
                    "containers": [
                        {
                            "name": "api",
                            "image": "saga/api:1.0.0",
                            "imagePullPolicy": "IfNotPresent",
                            "args": ["--port", "8080"],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [
                                {"name": "A", "value": "1"},
                                {
                                    "name": "B",
                                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                                },
                            ],
                            "resources": {
                                "requests": {"cpu": "100m", "memory": "128Mi"},
                                "limits": {"cpu": 1, "memory": "1Gi"},
                            },
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": "http"},
                                "periodSeconds": 5,
                            },
                            "livenessProbe": {"tcpSocket": {"port": 8080}},
                            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/saga"}],
                        }
                    ],
                    "volumes": [{"name": "cfg", "configMap": {"name": "saga-api"}}],
                },
            },
        },
        "status": {},
    }


def container(obj: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    return c


def service(target_port: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "saga-api"},
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": "saga-api"},
            "ports": [
                {
                    "name": "http",
                    "port": 80,
                    "targetPort": target_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


CONTAINER = "spec.template.spec.containers[0]"


@pytest.mark.parametrize("version", VERSIONS)
def test_valid_deployment_passes(version: str) -> None:
    assert validate(deployment(), version) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_container_field_is_an_error_naming_the_path(version: str) -> None:
    obj = deployment()
    container(obj)["imagePullPolicyy"] = "Always"
    assert validate(obj, version) == [
        f'{CONTAINER}.imagePullPolicyy: unknown field "imagePullPolicyy"'
    ]


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (lambda o: o, "replica"),
        (lambda o: o["metadata"], "label"),
        (lambda o: o["spec"]["template"]["metadata"], "annotation"),
        (lambda o: o["spec"]["template"]["spec"], "container"),
        (lambda o: container(o)["resources"], "limit"),
        (lambda o: container(o)["readinessProbe"]["httpGet"], "paths"),
    ],
)
def test_unknown_field_anywhere_is_an_error(where: Any, field: str) -> None:
    obj = deployment()
    where(obj)[field] = {}
    errors = validate(obj, VERSIONS[-1])
    assert len(errors) == 1 and errors[0].endswith(f'{field}: unknown field "{field}"'), errors


@pytest.mark.parametrize("version", VERSIONS)
def test_wrong_type_is_an_error(version: str) -> None:
    obj = deployment()
    obj["spec"]["replicas"] = "2"
    container(obj)["ports"][0]["containerPort"] = "8080"
    container(obj)["args"] = "--port 8080"
    assert validate(obj, version) == [
        'spec.replicas: expected integer, got string "2"',
        f'{CONTAINER}.args: expected array, got string "--port 8080"',
        f'{CONTAINER}.ports[0].containerPort: expected integer, got string "8080"',
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_required_field_is_an_error(version: str) -> None:
    obj = deployment()
    del container(obj)["name"]
    del obj["spec"]["selector"]
    assert validate(obj, version) == [
        f'{CONTAINER}: missing required field "name"',
        'spec: missing required field "selector"',
    ]


def test_null_is_fine_for_optional_fields_only() -> None:
    obj = deployment()
    obj["spec"]["replicas"] = None
    container(obj)["resources"] = None
    assert validate(obj, VERSIONS[-1]) == []
    container(obj)["name"] = None
    assert validate(obj, VERSIONS[-1]) == [f"{CONTAINER}.name: expected string, got null null"]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("target_port", [8080, "http"])
def test_int_or_string_accepts_int_and_string(version: str, target_port: Any) -> None:
    assert validate(service(target_port), version) == []


@pytest.mark.parametrize("target_port", [True, 8080.5, ["http"]])
def test_int_or_string_rejects_other_types(target_port: Any) -> None:
    errors = validate(service(target_port), VERSIONS[-1])
    assert len(errors) == 1 and errors[0].startswith(
        "spec.ports[0].targetPort: expected integer or string"
    )


@pytest.mark.parametrize("quantity", ["250m", "1.5", 2, 0.5, "512Mi", "1Gi", "1e3", "100k"])
def test_quantity_accepts_numbers_and_quantity_strings(quantity: Any) -> None:
    obj = deployment()
    container(obj)["resources"]["limits"]["memory"] = quantity
    assert validate(obj, VERSIONS[-1]) == []


@pytest.mark.parametrize("quantity", ["1 Gi", "1GB", "lots", True])
def test_quantity_rejects_garbage(quantity: Any) -> None:
    obj = deployment()
    container(obj)["resources"]["limits"]["memory"] = quantity
    errors = validate(obj, VERSIONS[-1])
    assert len(errors) == 1 and errors[0].startswith(f"{CONTAINER}.resources.limits.memory: "), (
        errors
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_hpa_autoscaling_v2_passes(version: str) -> None:
    hpa: dict[str, Any] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "saga-api"},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "saga-api",
            },
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "saga_backlog"},
                        "target": {"type": "AverageValue", "averageValue": "100"},
                    },
                },
            ],
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                }
            },
        },
    }
    assert validate(hpa, version) == []
    del hpa["spec"]["maxReplicas"]
    assert validate(hpa, version) == ['spec: missing required field "maxReplicas"']


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("example.com/v1", "Widget"),  # a CRD nobody fetched
        ("apps/v1", "Deploymnet"),  # a typo
        ("extensions/v1beta1", "Deployment"),  # removed long ago
        ("autoscaling/v2beta2", "HorizontalPodAutoscaler"),  # removed in 1.26
    ],
)
def test_unknown_api_version_or_kind_is_reported(api_version: str, kind: str) -> None:
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}}
    validator = load_validator(VERSIONS[-1])
    assert not validator.knows(api_version, kind)
    with pytest.raises(
        UnknownKind, match=re.escape(f"apiVersion='{api_version}' kind='{kind}'")
    ) as exc:
        validate(obj, VERSIONS[-1])
    assert (exc.value.api_version, exc.value.kind) == (api_version, kind)


def test_object_without_api_version_or_kind_is_an_error() -> None:
    assert validate({"metadata": {"name": "x"}}, VERSIONS[-1]) == [
        "apiVersion: missing or not a string",
        "kind: missing or not a string",
    ]


def test_common_chart_mistakes() -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "labels": {"version": 1}},
        "data": {"port": 8080, "ok": "x"},
    }
    assert validate(configmap, VERSIONS[-1]) == [
        "data.port: expected string, got integer 8080",
        "metadata.labels.version: expected string, got integer 1",
    ]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"good": "aGVsbG8=", "bad": "hello"},
        "stringData": {"plain": "hello"},
    }
    errors = validate(secret, VERSIONS[-1])
    assert len(errors) == 1 and errors[0].startswith('data.bad: "hello" is not base64'), errors
    # (enum-valued fields such as imagePullPolicy carry their values only in the
    # description of the OpenAPI v2 spec, so they are not checked here)
    obj = deployment()
    container(obj)["env"][0]["value"] = 1
    assert validate(obj, VERSIONS[-1]) == [
        f"{CONTAINER}.env[0].value: expected string, got integer 1"
    ]


def test_other_kinds_the_chart_renders_pass() -> None:
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "p"},
            "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"a": "b"}}},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "kafka"},
            "spec": {
                "serviceName": "kafka",
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "k", "image": "k"}]},
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "10Gi"}},
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "n"},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"ports": [{"port": "http"}, {"port": 9090, "protocol": "TCP"}]}],
            },
        },
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "j"},
            "spec": {
                "schedule": "*/5 * * * *",
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "OnFailure",
                                "containers": [{"name": "j", "image": "j"}],
                            }
                        }
                    }
                },
            },
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "r"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "r",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "s"}],
        },
    ]
    for version in VERSIONS:
        for obj in objs:
            assert validate(obj, version) == [], (version, obj["kind"])


# --- CRDs fetched from the Go module proxy (Gateway API, prometheus-operator) ---


def httproute() -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "saga-api", "labels": {"a": "b"}},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}],
            "hostnames": ["saga.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
                    "backendRefs": [{"name": "saga-api", "port": 80}],
                    "timeouts": {"request": "10s"},
                }
            ],
        },
    }


def servicemonitor() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "saga-api"},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "saga-api"}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
        },
    }


def prometheusrule() -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "saga"},
        "spec": {
            "groups": [
                {
                    "name": "saga",
                    "rules": [
                        {
                            "alert": "SagaStuck",
                            "expr": "saga_stuck > 0",
                            "for": "10m",
                            "labels": {"severity": "page"},
                            "annotations": {"summary": "stuck"},
                        }
                    ],
                }
            ]
        },
    }


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("make", [httproute, servicemonitor, prometheusrule])
def test_crd_kinds_validate(version: str, make: Any) -> None:
    assert validate(make(), version) == []


def test_crd_kinds_are_strict() -> None:
    route = httproute()
    route["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 1
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Prefix"
    route["metadata"]["lables"] = {}
    assert validate(route, VERSIONS[-1]) == [
        'metadata.lables: unknown field "lables"',
        'spec.rules[0].backendRefs[0].weigth: unknown field "weigth"',
        (
            'spec.rules[0].matches[0].path.type: "Prefix" is not one of'
            ' ["Exact", "PathPrefix", "RegularExpression"]'
        ),
    ]
    monitor = servicemonitor()
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "30s"
    del monitor["spec"]["selector"]
    assert validate(monitor, VERSIONS[-1]) == [
        'spec.endpoints[0].scrapeInterval: unknown field "scrapeInterval"',
        'spec: missing required field "selector"',
    ]
    rule = prometheusrule()
    rule["spec"]["groups"][0]["rules"][0]["expr"] = ["not", "a", "string"]
    (error,) = validate(rule, VERSIONS[-1])
    assert error.startswith("spec.groups[0].rules[0].expr: ")


def test_the_pinned_versions_are_three_minor_lines() -> None:
    minors = [tuple(int(x) for x in v.lstrip("v").split(".")[:2]) for v in VERSIONS]
    assert len(VERSIONS) == 3 and minors == sorted(set(minors)), VERSIONS
    for version in VERSIONS:
        validator = load_validator(version)
        assert validator.version == version
        assert validator.knows("apps/v1", "Deployment")
        assert validator.knows("gateway.networking.k8s.io/v1", "HTTPRoute")
        assert validator.knows("monitoring.coreos.com/v1", "ServiceMonitor")


def test_fetch_script_is_idempotent_and_offline_when_warm() -> None:
    script = str(k8s_openapi.FETCH_SCRIPT)
    assert (
        subprocess.run(["bash", script, "--help"], capture_output=True, check=False).returncode == 0
    )
    check = subprocess.run(["bash", script, "--check"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    bad = subprocess.run(["bash", script, "--nope"], capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "unknown option: --nope" in bad.stderr


def test_the_validator_is_cached_and_copes_with_many_objects() -> None:
    assert load_validator(VERSIONS[-1]) is load_validator(VERSIONS[-1].lstrip("v"))
    objs = [deployment(), service(80), httproute(), servicemonitor()] * 50
    for obj in objs:
        assert validate(copy.deepcopy(obj), VERSIONS[-1]) == []


@pytest.mark.parametrize("target_port", [8080, "http"])
def test_crd_int_or_string(target_port: Any) -> None:
    monitor = servicemonitor()
    monitor["spec"]["endpoints"][0]["targetPort"] = target_port
    del monitor["spec"]["endpoints"][0]["port"]
    assert validate(monitor, VERSIONS[-1]) == []
    monitor["spec"]["endpoints"][0]["targetPort"] = [target_port]
    assert len(validate(monitor, VERSIONS[-1])) == 1


def test_crd_manifests_themselves_validate_down_to_nested_schemas() -> None:
    crds = [doc for d in k8s_openapi.crd_dirs() for doc in k8s_openapi._crd_documents(d)]
    assert len(crds) >= 10
    for crd in crds:
        assert validate(copy.deepcopy(dict(crd)), VERSIONS[0]) == [], crd["metadata"]["name"]
    crd = copy.deepcopy(dict(next(c for c in crds if c["spec"]["names"]["kind"] == "HTTPRoute")))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["properties"]["rules"]["items"]["maxItem"] = 3
    where = "spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.rules.items"
    assert validate(crd, VERSIONS[0]) == [f'{where}.maxItem: unknown field "maxItem"']
