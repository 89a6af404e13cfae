"""Background jobs (jobs.enabled): the app's JOBS_* settings, the worker Deployment, its
scrape Service, HPA, PDB and NetworkPolicy, the reconcile CronJob, and their alerts.
Schema validation of every rendering, and the restricted pod checks, run in
test_chart_render.py and test_chart_policies.py over renderings with jobs on."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import chart_metrics
import k8s_openapi
import pytest
import yaml
from chart_metrics import FOREIGN_METRICS, MONITORING_API
from helm import (
    PROFILES,
    RELEASE,
    REPO_ROOT,
    Manifest,
    find,
    one,
    pod_spec,
    pod_template,
    render,
)
from test_chart_monitoring import _app_metric_names
from test_chart_render import EXTERNAL

APP = f"{RELEASE}-saga-stack"
WORKER = f"{APP}-worker"
RECONCILE = f"{APP}-reconcile"
JOBS = {"jobs.enabled": True}
PROMTOOL = REPO_ROOT / ".tools" / "bin" / "promtool"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and In / NotIn / Exists expressions) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op = expr["key"], expr["operator"]
        if op == "In" and labels.get(key) not in expr["values"]:
            return False
        if op == "NotIn" and key in labels and labels[key] in expr["values"]:
            return False
        if op == "Exists" and key not in labels:
            return False
    return True


def test_selects_reads_expressions() -> None:
    sel = {
        "matchLabels": {"a": "1"},
        "matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["worker"]}],
    }
    assert selects(sel, {"a": "1", "c": "app"})
    assert not selects(sel, {"a": "1", "c": "worker"})
    assert not selects(sel, {"a": "2", "c": "app"})
    assert not selects({"matchExpressions": [{"key": "c", "operator": "In", "values": ["x"]}]}, {})


def _env(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in spec["containers"][0].get("env", [])}


# ---- off by default -----------------------------------------------------------------------


def test_jobs_are_off_by_default_and_the_app_gets_no_jobs_setting() -> None:
    objects = render()
    assert not find(objects, "Deployment", WORKER)
    assert not find(objects, "CronJob")
    assert not find(objects, "Service", WORKER)
    assert not find(objects, "NetworkPolicy", WORKER)
    config = one(objects, "ConfigMap", APP)["data"]
    assert not [k for k in config if k.startswith("JOBS_")]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_the_local_profile_turns_jobs_on_with_queue_driven_workers(profile: Path) -> None:
    """On a laptop a user sees everything; the ha, local-ha (a layer on local) and
    production profiles leave jobs to the user's choice."""
    objects = render([profile])
    local = profile.stem == "local"
    assert bool(find(objects, "CronJob")) == local
    assert ("JOBS_ENABLED" in one(objects, "ConfigMap", APP)["data"]) == local
    if local:
        hpa = one(objects, "HorizontalPodAutoscaler", f"{APP}-worker")
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)


# ---- the app's settings -------------------------------------------------------------------


def test_jobs_settings_reach_the_app_config() -> None:
    values = {
        **JOBS,
        "jobs.queue": "orders.docs",
        "jobs.prefix": "shop",
        # the bundled Redis's app user must be let into the new prefix
        "redis.auth.acl.clientKeyPatterns": ["saga:*", "shop:*"],
        "jobs.concurrency": 8,
        "jobs.lockMs": 60000,
        "jobs.stalledIntervalMs": 15000,
        "jobs.maxStalledCount": 3,
        "jobs.attempts": 7,
        "jobs.backoffMs": 2500,
        "jobs.keepCompleted": 50,
        "jobs.keepFailed": 2000000,
        "jobs.metricsIntervalSeconds": 0.5,
        "jobs.ackDelayMs": 1500,
    }
    config = one(render(values=values), "ConfigMap", APP)["data"]
    assert {k: v for k, v in config.items() if k.startswith("JOBS_")} == {
        "JOBS_ENABLED": "true",
        "JOBS_QUEUE": "orders.docs",
        "JOBS_PREFIX": "shop",
        "JOBS_CONCURRENCY": "8",
        "JOBS_LOCK_MS": "60000",
        "JOBS_STALLED_INTERVAL_MS": "15000",
        "JOBS_MAX_STALLED_COUNT": "3",
        "JOBS_ATTEMPTS": "7",
        "JOBS_BACKOFF_MS": "2500",
        "JOBS_KEEP_COMPLETED": "50",
        "JOBS_KEEP_FAILED": "2000000",
        "JOBS_METRICS_INTERVAL_SECONDS": "0.5",
        "JOBS_ACK_DELAY_MS": "1500",
    }


def test_the_apps_settings_accept_the_rendered_jobs_config() -> None:
    from saga_service.settings import Settings

    objects = render(values={**JOBS, "jobs.reconcile.documentGraceSeconds": 90})
    env: dict[str, Any] = {k.lower(): v for k, v in one(objects, "ConfigMap", APP)["data"].items()}
    for name, entry in _env(pod_spec(one(objects, "CronJob", RECONCILE))).items():
        env[name.lower()] = entry.get("value", "x")  # secrets stand in as 'x'
    settings = Settings(**env)
    assert settings.jobs_enabled is True
    assert settings.jobs_queue == "saga-jobs"
    assert settings.jobs_lock_ms == 30000
    assert settings.reconcile_document_grace_seconds == 90


def _checksum(values: dict[str, Any], name: str) -> str:
    annotations = pod_template(one(render(values=values), "Deployment", name))["metadata"][
        "annotations"
    ]
    checksum: str = annotations["checksum/config"]
    return checksum


def test_turning_jobs_on_or_changing_them_rolls_the_app_and_the_workers() -> None:
    off = _checksum({}, APP)
    on = _checksum(JOBS, APP)
    other_queue = {**JOBS, "jobs.queue": "other"}
    assert off != on
    assert _checksum(other_queue, APP) != on
    assert _checksum(other_queue, WORKER) != _checksum(JOBS, WORKER)
    # scaling the workers is not a config change
    assert _checksum({**JOBS, "jobs.replicas": 5}, APP) == on


# ---- the worker ---------------------------------------------------------------------------


def test_worker_runs_the_app_image_with_the_apps_environment() -> None:
    objects = render(
        values={**JOBS, "image.tag": "1.2.3", "extraEnv": [{"name": "X", "value": "1"}]}
    )
    app = pod_spec(one(objects, "Deployment", APP))
    worker = pod_spec(one(objects, "Deployment", WORKER))
    (container,) = worker["containers"]
    assert container["args"] == ["worker"]
    assert container["image"] == app["containers"][0]["image"] == "saga-stack/saga-service:1.2.3"
    assert container["envFrom"] == app["containers"][0]["envFrom"]
    app_env, worker_env = _env(app), _env(worker)
    for name, entry in app_env.items():
        if "valueFrom" in entry and "secretKeyRef" in entry["valueFrom"]:
            assert worker_env[name] == entry, name
    assert worker_env["X"] == {"name": "X", "value": "1"}
    assert worker["securityContext"] == app["securityContext"]
    assert container["securityContext"] == app["containers"][0]["securityContext"]
    assert worker["serviceAccountName"] == app["serviceAccountName"]


def test_worker_probes_grace_spread_and_node_loss() -> None:
    objects = render(
        values={
            **JOBS,
            "shutdown.appGraceSeconds": 40,
            "shutdown.terminationGracePeriodSeconds": 50,
        }
    )
    deployment = one(objects, "Deployment", WORKER)
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz/live", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": "http"}
    assert "lifecycle" not in container
    config = one(objects, "ConfigMap", APP)["data"]
    assert spec["terminationGracePeriodSeconds"] > int(config["SHUTDOWN_GRACE_SECONDS"]) == 40
    pod_labels = pod_template(deployment)["metadata"]["labels"]
    spread = spec["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    }
    assert all(selects(c["labelSelector"], pod_labels) for c in spread)
    app_pods = pod_template(one(objects, "Deployment", APP))["metadata"]["labels"]
    assert not any(selects(c["labelSelector"], app_pods) for c in spread)
    tolerations = {t["key"]: t for t in spec["tolerations"]}
    assert tolerations["node.kubernetes.io/unreachable"]["tolerationSeconds"] == 30
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_worker_replicas_and_resources_come_from_jobs_values() -> None:
    resources = {
        "requests": {"cpu": "10m", "memory": "64Mi"},
        "limits": {"cpu": "200m", "memory": "96Mi"},
    }
    objects = render(values={**JOBS, "jobs.replicas": 4, "jobs.resources": resources})
    deployment = one(objects, "Deployment", WORKER)
    assert deployment["spec"]["replicas"] == 4
    # Helm merges maps: the chart's ephemeral-storage stays unless it is set too
    assert pod_spec(deployment)["containers"][0]["resources"] == {
        "requests": {**resources["requests"], "ephemeral-storage": "64Mi"},
        "limits": {**resources["limits"], "ephemeral-storage": "1Gi"},
    }


def test_worker_pods_are_scraped_through_their_own_service_not_the_apps() -> None:
    objects = render(values=JOBS, extra=MONITORING_API)
    worker_pods = pod_template(one(objects, "Deployment", WORKER))["metadata"]["labels"]
    app_service = one(objects, "Service", APP)
    assert not selects({"matchLabels": app_service["spec"]["selector"]}, worker_pods)
    service = one(objects, "Service", WORKER)
    assert selects({"matchLabels": service["spec"]["selector"]}, worker_pods)
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    monitor = one(objects, "ServiceMonitor", WORKER)
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert not selects(monitor["spec"]["selector"], app_service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


# ---- HPA and PDB --------------------------------------------------------------------------


def test_worker_hpa_scales_on_the_waiting_jobs_of_this_release(k8s_schemas: list[str]) -> None:
    values = {
        **JOBS,
        "jobs.queue": "docs",
        "jobs.autoscaling.enabled": True,
        "jobs.autoscaling.minReplicas": 2,
        "jobs.autoscaling.maxReplicas": 12,
        "jobs.autoscaling.targetWaitingPerPod": "50",
    }
    objects = render(values=values)
    hpa = one(objects, "HorizontalPodAutoscaler", WORKER)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": WORKER,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 12)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "External",
            "external": {
                "metric": {
                    "name": "saga_jobs",
                    "selector": {
                        "matchLabels": {"state": "waiting", "queue": "docs", "service": WORKER}
                    },
                },
                "target": {"type": "AverageValue", "averageValue": "50"},
            },
        }
    ]
    assert hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
    assert "replicas" not in one(objects, "Deployment", WORKER)["spec"]
    # the app's HPA is its own switch
    assert not find(objects, "HorizontalPodAutoscaler", APP)
    assert k8s_openapi.schema_errors([hpa], k8s_schemas) == []


def test_saga_jobs_is_a_metric_the_app_exports_with_the_selected_labels() -> None:
    from saga_service.observability import metrics as app_metrics

    assert "saga_jobs" in _app_metric_names()
    assert {"queue", "state"} <= set(app_metrics.JOBS._labelnames)


def test_worker_pdb_selects_only_the_workers() -> None:
    objects = render(values={**JOBS, "jobs.pdb.enabled": True, "jobs.replicas": 3})
    pdb = one(objects, "PodDisruptionBudget", WORKER)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(
        pdb["spec"]["selector"],
        pod_template(one(objects, "Deployment", WORKER))["metadata"]["labels"],
    )
    assert not selects(
        pdb["spec"]["selector"], pod_template(one(objects, "Deployment", APP))["metadata"]["labels"]
    )
    assert not find(objects, "PodDisruptionBudget", APP)


# ---- the reconcile CronJob ----------------------------------------------------------------


def test_reconcile_cronjob_runs_once_per_schedule_without_retries() -> None:
    values = {
        **JOBS,
        "jobs.reconcile.schedule": "7 */2 * * *",
        "jobs.reconcile.startingDeadlineSeconds": 120,
        "jobs.reconcile.successfulJobsHistoryLimit": 1,
        "jobs.reconcile.failedJobsHistoryLimit": 4,
        "jobs.reconcile.activeDeadlineSeconds": 900,
        "jobs.reconcile.documentGraceSeconds": 45,
    }
    objects = render(values=values)
    cron = one(objects, "CronJob", RECONCILE)
    spec = cron["spec"]
    assert spec["schedule"] == "7 */2 * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 120
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (1, 4)
    job = spec["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0
    assert job["activeDeadlineSeconds"] == 900
    pod = pod_spec(cron)
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["args"] == ["reconcile"]
    app = pod_spec(one(objects, "Deployment", APP))["containers"][0]
    assert container["image"] == app["image"]
    assert container["envFrom"] == app["envFrom"]
    env = _env(pod)
    assert env["RECONCILE_DOCUMENT_GRACE_SECONDS"]["value"] == "45"
    assert "secretKeyRef" in env["DATABASE_PASSWORD"]["valueFrom"]
    assert len(cron["metadata"]["name"]) <= 52  # the controller appends 11 characters


def test_long_release_names_keep_the_cronjob_name_within_52_characters() -> None:
    objects = render(values={**JOBS, "fullnameOverride": "x" * 52})
    (cron,) = find(objects, "CronJob")
    assert len(cron["metadata"]["name"]) <= 52
    assert cron["metadata"]["name"].endswith("-reconcile")
    (worker,) = [
        d for d in find(objects, "Deployment") if d["metadata"]["name"].endswith("-worker")
    ]
    assert len(worker["metadata"]["name"]) <= 63


def test_reconcile_can_be_switched_off_alone() -> None:
    objects = render(values={**JOBS, "jobs.reconcile.enabled": False})
    assert not find(objects, "CronJob")
    assert find(objects, "Deployment", WORKER)


# ---- NetworkPolicy ------------------------------------------------------------------------


def _ports(rules: list[dict[str, Any]]) -> set[Any]:
    return {p["port"] for r in rules for p in r.get("ports", [])}


@pytest.mark.parametrize("mode", ["bundled", "external"])
def test_worker_policy_allows_dns_postgres_redis_out_and_only_scrapes_in(mode: str) -> None:
    values: dict[str, Any] = {**JOBS, "networkPolicy.allowExternalEgress": True}
    if mode == "external":
        values |= {**EXTERNAL, "externalDatabase.port": 6432, "externalRedis.port": 6380}
    objects = render(values=values)
    policy = one(objects, "NetworkPolicy", WORKER)
    worker_pods = pod_template(one(objects, "Deployment", WORKER))["metadata"]["labels"]
    reconcile_pods = pod_template(one(objects, "CronJob", RECONCILE))["metadata"]["labels"]
    app_pods = pod_template(one(objects, "Deployment", APP))["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]
    assert selects(selector, worker_pods) and selects(selector, reconcile_pods)
    assert not selects(selector, app_pods)
    # the app's broader policy (HTTP in from the namespace, Kafka out) leaves them alone
    app_policy = one(objects, "NetworkPolicy", f"{APP}-app")["spec"]["podSelector"]
    assert selects(app_policy, app_pods)
    assert not selects(app_policy, worker_pods) and not selects(app_policy, reconcile_pods)
    ingress = policy["spec"]["ingress"]
    assert len(ingress) == 1 and _ports(ingress) == {"http"}
    assert ingress[0]["from"] == [
        {
            "namespaceSelector": {},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        }
    ]
    egress_ports = _ports(policy["spec"]["egress"])
    expected = {53, 5432, 6379} if mode == "bundled" else {53, 6432, 6380}
    assert egress_ports == expected, "DNS, PostgreSQL and Redis only (no Kafka)"


def test_bundled_data_layer_admits_the_workers_to_postgres_and_redis_only() -> None:
    objects = render(values=JOBS)
    worker_pods = pod_template(one(objects, "Deployment", WORKER))["metadata"]["labels"]
    reconcile_pods = pod_template(one(objects, "CronJob", RECONCILE))["metadata"]["labels"]

    def admitted(name: str, pod: dict[str, str]) -> bool:
        policy = one(objects, "NetworkPolicy", name)
        return any(
            selects(peer["podSelector"], pod)
            for rule in policy["spec"]["ingress"]
            for peer in rule["from"]
            if "podSelector" in peer and "namespaceSelector" not in peer
        )

    assert admitted("saga-postgresql", worker_pods) and admitted("saga-redis", worker_pods)
    assert not admitted("saga-kafka", worker_pods)
    assert admitted("saga-postgresql", reconcile_pods)


def test_without_monitoring_nothing_may_reach_the_workers() -> None:
    policy = one(render(values={**JOBS, "monitoring.enabled": False}), "NetworkPolicy", WORKER)
    assert policy["spec"]["ingress"] == []
    assert "Ingress" in policy["spec"]["policyTypes"]


# ---- alerts and dashboard -----------------------------------------------------------------


@pytest.fixture(scope="module")
def jobs_rules() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = chart_metrics.rule_groups(
        render(values=JOBS, extra=MONITORING_API)
    )
    return groups


def test_job_alerts_render_only_with_jobs(jobs_rules: list[dict[str, Any]]) -> None:
    alerts = {r["alert"] for g in jobs_rules for r in g["rules"]}
    job_alerts = {
        "SagaJobWorkersDown",
        "SagaJobQueueGrowing",
        "SagaJobWaitHigh",
        "SagaJobsFailed",
        "SagaReconcileFindings",
        "SagaReconcileNotRunning",
        "SagaReconcileNeverRan",
    }
    assert alerts >= job_alerts
    without = {
        r["alert"]
        for g in chart_metrics.rule_groups(render(extra=MONITORING_API))
        for r in g["rules"]
    }
    assert not without & job_alerts
    no_cron = chart_metrics.rule_groups(
        render(values={**JOBS, "jobs.reconcile.enabled": False}, extra=MONITORING_API)
    )
    assert "SagaReconcileNeverRan" not in {r["alert"] for g in no_cron for r in g["rules"]}


def test_job_alerts_read_the_workers_series_with_max(jobs_rules: list[dict[str, Any]]) -> None:
    rules = {r["alert"]: r for g in jobs_rules for r in g["rules"]}
    growing = rules["SagaJobQueueGrowing"]["expr"]
    assert f'job="{WORKER}"' in growing and 'state="waiting"' in growing
    assert "max(saga_jobs" in growing and "sum(saga_jobs" not in growing
    assert "> 500" in growing
    assert "1800" in rules["SagaReconcileNotRunning"]["expr"]
    assert rules["SagaReconcileNeverRan"]["for"] == "1800s"


def test_job_rules_pass_promtool(jobs_rules: list[dict[str, Any]], tmp_path: Path) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": jobs_rules}))
    proc = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_job_rules_and_dashboard_use_only_metrics_the_app_exports() -> None:
    objects = render(values=JOBS, extra=MONITORING_API)
    used = chart_metrics.app_metrics_used(objects)
    exported = _app_metric_names()
    assert set(used) <= exported, sorted(set(used) - exported)
    assert not set(used) & FOREIGN_METRICS
    for metric in ("saga_jobs", "saga_reconcile_findings", "saga_jobs_processed_total"):
        assert any(w.startswith("alert ") for w in used[metric]), metric
        assert any(w.startswith("dashboard ") for w in used[metric]), metric
    assert any(w.startswith("alert ") for w in used["saga_reconcile_last_run_timestamp_seconds"])


def test_dashboard_queue_panel_takes_the_max_over_workers() -> None:
    (board,) = chart_metrics.dashboards(render()).values()
    exprs = [e for e in chart_metrics.dashboard_exprs(board) if "saga_jobs{" in e]
    assert exprs and all(e.startswith("max") and 'job="$job-worker"' in e for e in exprs)


def test_every_jobs_object_validates(k8s_schemas: list[str]) -> None:
    objects = render(
        values={**JOBS, "jobs.autoscaling.enabled": True, "jobs.pdb.enabled": True},
        extra=MONITORING_API,
    )
    ours: list[Manifest] = [
        o
        for o in objects
        if o["metadata"]["name"] in (WORKER, RECONCILE) or o["kind"] == "PrometheusRule"
    ]
    assert {o["kind"] for o in ours} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "CronJob",
        "ServiceMonitor",
        "PrometheusRule",
    }
    assert k8s_openapi.schema_errors(ours, k8s_schemas) == []


@pytest.mark.parametrize("schedule", ["0  3 * * MON-FRI", "*/10 8-18 1-15 * ?", "5 4 L * *"])
def test_five_field_schedules_are_accepted(schedule: str) -> None:
    cron = one(render(values={**JOBS, "jobs.reconcile.schedule": schedule}), "CronJob", RECONCILE)
    assert cron["spec"]["schedule"] == schedule


def test_a_reloadable_setting_restarts_the_workers_but_not_the_app() -> None:
    """The app reloads LOG_LEVEL from its runtime file; the worker reads it at start only."""

    def annotations(values: dict[str, Any], name: str) -> dict[str, str]:
        template = pod_template(one(render(values={**JOBS, **values}), "Deployment", name))
        found: dict[str, str] = template["metadata"]["annotations"]
        return found

    assert annotations({"config.logLevel": "DEBUG"}, APP) == annotations({}, APP)
    assert annotations({"config.logLevel": "DEBUG"}, WORKER) != annotations({}, WORKER)


def test_jobs_off_turns_off_their_hpa_and_pdb_too() -> None:
    """A profile that scales its workers (values/local.yaml) layered with jobs off."""
    objects = render(
        values={"jobs.enabled": False, "jobs.autoscaling.enabled": True, "jobs.pdb.enabled": True}
    )
    assert not find(objects, "HorizontalPodAutoscaler", f"{APP}-worker")
    assert not find(objects, "PodDisruptionBudget", f"{APP}-worker")
    assert not find(objects, "Deployment", f"{APP}-worker")
