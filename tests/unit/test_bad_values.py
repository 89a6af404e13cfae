"""Bad values are refused at `helm template` time, with the offending key named.

Each case: the values, and the text the error must contain (the key's path as
helm's schema validator prints it, or the key name in our own checks).
"""

from __future__ import annotations

from typing import Any

import pytest
from helm import render_error

CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    # unknown keys, at each level
    ("unknown top-level key", {"replica": 3}, ["additional properties 'replica'"]),
    ("unknown key under image", {"image.tags": "1.0"}, ["/image", "'tags'"]),
    (
        "unknown key under autoscaling",
        {"autoscaling.minReplicas": 2},
        ["/autoscaling", "'minReplicas'"],
    ),
    (
        "unknown key three levels down",
        {"probes.readiness.initialDelay": 5},
        ["/probes/readiness", "'initialDelay'"],
    ),
    (
        "unknown key in an ingress host",
        {
            "ingress.hosts": [
                {
                    "host": "a.example.com",
                    "paths": [{"path": "/", "pathType": "Prefix"}],
                    "tls": True,
                }
            ]
        },
        ["/ingress/hosts/0", "'tls'"],
    ),
    ("unknown key in a subchart", {"postgresql.replicas": 2}, ["postgresql", "'replicas'"]),
    (
        "unknown key in a subchart's nested map",
        {"kafka.persistence.sizes": "1Gi"},
        ["kafka", "/persistence", "'sizes'"],
    ),
    # wrong types
    ("replicas as a string", {"replicas": "three"}, ["/replicas", "string"]),
    ("autoscaling.enabled as a string", {"autoscaling.enabled": "yes"}, ["/autoscaling/enabled"]),
    ("service.port as a string", {"service.port": "http"}, ["/service/port"]),
    ("podAnnotations value not a string", {"podAnnotations": {"a": 1}}, ["/podAnnotations/a"]),
    ("tolerations not a list", {"tolerations": {"key": "x"}}, ["/tolerations"]),
    (
        "nodeLossTolerationSeconds negative",
        {"nodeLossTolerationSeconds": -1},
        ["/nodeLossTolerationSeconds", "minimum"],
    ),
    (
        "nodeLossTolerationSeconds as a string",
        {"nodeLossTolerationSeconds": "30s"},
        ["/nodeLossTolerationSeconds"],
    ),
    # ranges and enums
    ("zero replicas", {"replicas": 0}, ["/replicas", "minimum"]),
    ("negative replicas", {"replicas": -2}, ["/replicas", "minimum"]),
    (
        "replicas above maxReplicas",
        {"autoscaling.enabled": True, "replicas": 12, "autoscaling.maxReplicas": 10},
        ["replicas (12)", "autoscaling.maxReplicas (10)"],
    ),
    ("port zero", {"containerPort": 0}, ["/containerPort"]),
    ("zero keep-alive", {"httpKeepAliveSeconds": 0}, ["/httpKeepAliveSeconds", "minimum"]),
    ("port above 65535", {"service.port": 70000}, ["/service/port", "maximum"]),
    ("bad pullPolicy", {"image.pullPolicy": "Sometimes"}, ["/image/pullPolicy"]),
    ("empty image repository", {"image.repository": ""}, ["/image/repository"]),
    ("image repository with a space", {"image.repository": "my app"}, ["/image/repository"]),
    ("bad digest", {"image.digest": "sha256:xyz"}, ["/image/digest"]),
    ("invalid CPU quantity", {"resources.requests.cpu": "lots"}, ["/resources/requests/cpu"]),
    ("invalid memory quantity", {"resources.limits.memory": "1GB"}, ["/resources/limits/memory"]),
    (
        "invalid subchart storage size",
        {"postgresql.persistence.size": "big"},
        ["postgresql", "/persistence/size"],
    ),
    ("bad log level", {"config.logLevel": "LOUD"}, ["/config/logLevel"]),
    ("lower-case log level", {"config.logLevel": "debug"}, ["/config/logLevel"]),
    ("unknown key under config", {"config.logLevl": "DEBUG"}, ["/config", "'logLevl'"]),
    ("lock TTL too short", {"config.lockTtlMs": 10}, ["/config/lockTtlMs", "minimum"]),
    (
        "lock acquire timeout too short",
        {"config.lockAcquireTimeoutMs": 5},
        ["/config/lockAcquireTimeoutMs", "minimum"],
    ),
    (
        "lock acquire timeout as a duration",
        {"config.lockAcquireTimeoutMs": "10s"},
        ["/config/lockAcquireTimeoutMs"],
    ),
    ("negative step delay", {"config.stepDelayMs": -1}, ["/config/stepDelayMs", "minimum"]),
    ("step delay of hours", {"config.stepDelayMs": 3600000}, ["/config/stepDelayMs", "maximum"]),
    ("fractional step delay", {"config.stepDelayMs": 2.5}, ["/config/stepDelayMs"]),
    ("bad service type", {"service.type": "ExternalName"}, ["/service/type"]),
    ("bad topic name", {"topics.events": "saga events"}, ["/topics/events"]),
    ("bad starts topic name", {"topics.starts": ""}, ["/topics/starts"]),
    (
        "bad ingress pathType",
        {
            "ingress.hosts": [
                {"host": "a.example.com", "paths": [{"path": "/", "pathType": "Glob"}]}
            ]
        },
        ["/ingress/hosts/0/paths/0/pathType"],
    ),
    (
        "bad ingress host",
        {"ingress.hosts": [{"host": "Not A Host", "paths": [{"path": "/", "pathType": "Prefix"}]}]},
        ["/ingress/hosts/0/host"],
    ),
    (
        "bad external bootstrap server",
        {"kafka.enabled": False, "externalKafka.bootstrapServers": ["no-port"]},
        ["/externalKafka/bootstrapServers/0"],
    ),
    ("bad redis mode", {"externalRedis.mode": "cluster"}, ["/externalRedis/mode"]),
    ("kafka with 2 nodes", {"kafka.replicaCount": 2}, ["kafka", "/replicaCount"]),
    (
        "redis architecture not offered",
        {"redis.architecture": "cluster"},
        ["redis", "/architecture"],
    ),
    # spans
    (
        "tracing endpoint without a scheme",
        {"tracing.otlpEndpoint": "jaeger:4318"},
        ["/tracing/otlpEndpoint"],
    ),
    ("tracing sample ratio above 1", {"tracing.sampleRatio": 1.5}, ["/tracing/sampleRatio"]),
    (
        "tracing service name with a space",
        {"tracing.serviceName": "saga service"},
        ["/tracing/serviceName"],
    ),
    ("unknown key under tracing", {"tracing.endpoint": "http://x"}, ["/tracing", "'endpoint'"]),
    # the console
    ("unknown key under console", {"console.enable": True}, ["/console", "'enable'"]),
    ("console.enabled as a string", {"console.enabled": "yes"}, ["/console/enabled"]),
    ("console replicas zero", {"console.replicas": 0}, ["/console/replicas", "minimum"]),
    ("console port above 65535", {"console.service.port": 70000}, ["/console/service/port"]),
    (
        "console prometheusUrl not a URL",
        {"console.prometheusUrl": "prometheus:9090"},
        ["/console/prometheusUrl"],
    ),
    (
        "console refresh of zero",
        {"console.refreshSeconds": 0},
        ["/console/refreshSeconds", "minimum"],
    ),
    (
        "console timeout of minutes",
        {"console.upstreamTimeoutSeconds": 600},
        ["/console/upstreamTimeoutSeconds", "maximum"],
    ),
    (
        "console image with a space",
        {"console.image.repository": "my console"},
        ["/console/image/repository"],
    ),
    ("console bad digest", {"console.image.digest": "sha256:xyz"}, ["/console/image/digest"]),
    (
        "console bad memory",
        {"console.resources.limits.memory": "1GB"},
        ["/console/resources/limits/memory"],
    ),
    (
        "unknown key in console ingress",
        {"console.ingress.host": "a"},
        ["/console/ingress", "'host'"],
    ),
    ("load through a side door", {"loadGenerator.through": "nodeport"}, ["/loadGenerator/through"]),
    (
        "ingress URL with a path",
        {"loadGenerator.ingressUrl": "http://x/y"},
        ["/loadGenerator/ingressUrl"],
    ),
    ("client port out of range", {"clientPorts.http": 70000}, ["/clientPorts/http"]),
    ("client port as text", {"clientPorts.https": "8443"}, ["/clientPorts/https"]),
    ("unknown client port", {"clientPorts.grpc": 9000}, ["/clientPorts", "'grpc'"]),
    # relations between values (templates/validate.yaml)
    (
        "ingress on with no host",
        {"ingress.enabled": True, "ingress.hosts": []},
        ["ingress.hosts is empty"],
    ),
    (
        "load through an ingress the chart does not render",
        {
            "loadGenerator.enabled": True,
            "loadGenerator.through": "ingress",
            "loadGenerator.ingressUrl": "http://traefik.ingress.svc",
        },
        ["loadGenerator.through is ingress but the chart renders no Ingress"],
    ),
    (
        "load through an ingress with no URL",
        {
            "loadGenerator.enabled": True,
            "loadGenerator.through": "ingress",
            "ingress.enabled": True,
        },
        ["loadGenerator.ingressUrl is empty"],
    ),
    (
        "load through an ingress the policies keep out",
        {
            "loadGenerator.enabled": True,
            "loadGenerator.through": "ingress",
            "ingress.enabled": True,
            "loadGenerator.ingressUrl": "http://traefik.ingress.svc",
        },
        ["networkPolicy.extraIngressFrom is empty"],
    ),
    (
        "httpRoute on with no parentRefs",
        {"httpRoute.enabled": True},
        ["httpRoute.parentRefs is empty"],
    ),
    (
        "console ingress on with no host",
        {"console.enabled": True, "console.ingress.enabled": True},
        ["console.ingress.hosts is empty"],
    ),
    (
        "console httpRoute on with no parentRefs",
        {"console.enabled": True, "console.httpRoute.enabled": True},
        ["console.httpRoute.parentRefs is empty"],
    ),
    (
        "console with no Prometheus peers",
        {"console.enabled": True, "console.prometheusPeers": []},
        ["console.prometheusPeers is empty"],
    ),
    (
        "external database with no host",
        {"postgresql.enabled": False, "externalDatabase.password": "x"},
        ["externalDatabase.host is empty"],
    ),
    (
        "external database with no password",
        {"postgresql.enabled": False, "externalDatabase.host": "db"},
        ["externalDatabase.password", "externalDatabase.existingSecret"],
    ),
    ("external redis with no host", {"redis.enabled": False}, ["externalRedis.host is empty"]),
    (
        "sentinel mode with no sentinels",
        {"redis.enabled": False, "externalRedis.mode": "sentinel"},
        ["externalRedis.sentinelNodes is empty"],
    ),
    (
        "external kafka with no brokers",
        {"kafka.enabled": False},
        ["externalKafka.bootstrapServers is empty"],
    ),
    (
        "SASL protocol without mechanism",
        {
            "kafka.enabled": False,
            "externalKafka.bootstrapServers": ["k:9092"],
            "externalKafka.securityProtocol": "SASL_SSL",
        },
        ["externalKafka.sasl.mechanism is empty"],
    ),
    (
        "grace period too short",
        {"shutdown.terminationGracePeriodSeconds": 10},
        ["shutdown.terminationGracePeriodSeconds (10)"],
    ),
    (
        "starts topic is the events topic",
        {"topics.starts": "saga.events"},
        ["topics.starts (saga.events)", "three different topics"],
    ),
    (
        "start lease below the step lease",
        {"config.sagaStartLeaseSeconds": 10},
        ["config.sagaStartLeaseSeconds (10)", "config.sagaLeaseSeconds (30)"],
    ),
    (
        "min ISR above replication",
        {"topics.minInsyncReplicas": 2},
        ["topics.minInsyncReplicas (2)", "topics.replicationFactor (1)"],
    ),
    (
        "replication above brokers",
        {"topics.replicationFactor": 3, "topics.minInsyncReplicas": 2},
        ["topics.replicationFactor (3)", "kafka.replicaCount (1)"],
    ),
    (
        "HPA without any metric",
        {
            "autoscaling.enabled": True,
            "autoscaling.targetCPUUtilizationPercentage": 0,
            "autoscaling.targetMemoryUtilizationPercentage": 0,
        },
        ["no metric"],
    ),
    (
        "backlog scaling without an HPA",
        {"autoscaling.backlog.enabled": True},
        ["autoscaling.backlog.enabled", "autoscaling.enabled is false"],
    ),
    (
        "backlog metric name Prometheus would not accept",
        {"autoscaling.backlog.metricName": "saga-backlog"},
        ["/autoscaling/backlog/metricName"],
    ),
    (
        "backlog target that is not a quantity",
        {"autoscaling.backlog.targetPerPod": "twenty"},
        ["/autoscaling/backlog/targetPerPod"],
    ),
    (
        "PDB that blocks every disruption",
        {"pdb.enabled": True, "replicas": 2, "pdb.maxUnavailable": 2},
        ["pdb.maxUnavailable (2)"],
    ),
    # the data layer's architectures (issue 5)
    (
        "sentinel without replication",
        {"redis.sentinel.enabled": True},
        ["redis.sentinel.enabled", "redis.architecture is standalone", "architecture=replication"],
    ),
    (
        "sentinel quorum above the number of sentinels",
        {
            "redis.architecture": "replication",
            "redis.sentinel.enabled": True,
            "redis.sentinel.quorum": 4,
        },
        ["redis.sentinel.quorum (4)", "redis.replica.replicaCount (3)"],
    ),
    (
        "sentinel with only two nodes",
        {
            "redis.architecture": "replication",
            "redis.sentinel.enabled": True,
            "redis.replica.replicaCount": 1,
        },
        ["redis.sentinel.enabled", "redis.replica.replicaCount of at least 2 (it is 1)"],
    ),
    (
        "redis AOF without persistence",
        {"redis.persistence.aof": True},
        ["redis.persistence.aof", "redis.persistence.enabled is false"],
    ),
    (
        "redis without replicas",
        {"redis.replica.replicaCount": 0},
        ["redis", "/replica/replicaCount"],
    ),
    (
        "unknown key under redis.sentinel",
        {"redis.sentinel.master": "x"},
        ["redis", "/sentinel", "'master'"],
    ),
    (
        "bad sentinel master set name",
        {"redis.sentinel.masterSet": "my master"},
        ["redis", "/sentinel/masterSet"],
    ),
    ("sentinel port as a string", {"redis.sentinel.port": "sentinel"}, ["redis", "/sentinel/port"]),
    (
        "redis pdb maxUnavailable zero",
        {"redis.pdb.maxUnavailable": 0},
        ["redis", "/pdb/maxUnavailable"],
    ),
    ("redis password with a space", {"redis.auth.password": "a b"}, ["redis", "/auth/password"]),
    ("kafka with 5 nodes", {"kafka.replicaCount": 5}, ["kafka", "/replicaCount"]),
    ("kafka replicaCount as a string", {"kafka.replicaCount": "3"}, ["kafka", "/replicaCount"]),
    (
        "unknown key under kafka.pdb",
        {"kafka.pdb.maxUnavailable": 2},
        ["kafka", "/pdb", "'maxUnavailable'"],
    ),
    (
        "topics replicated 3 times on one broker",
        {"topics.replicationFactor": 3, "topics.minInsyncReplicas": 1},
        ["topics.replicationFactor (3)", "kafka.replicaCount (1)"],
    ),
    (
        "min ISR above replication on 3 brokers",
        {"kafka.replicaCount": 3, "topics.replicationFactor": 2, "topics.minInsyncReplicas": 3},
        ["topics.minInsyncReplicas (3)", "topics.replicationFactor (2)"],
    ),
    (
        "external redis with only a port",
        {"redis.enabled": False, "externalRedis.port": 6380},
        ["redis.enabled is false", "externalRedis.host is empty"],
    ),
    (
        "external sentinel with only a master set",
        {
            "redis.enabled": False,
            "externalRedis.mode": "sentinel",
            "externalRedis.sentinelMasterSet": "locks",
        },
        ["externalRedis.sentinelNodes is empty"],
    ),
    (
        "external sentinel node without a port",
        {
            "redis.enabled": False,
            "externalRedis.mode": "sentinel",
            "externalRedis.sentinelNodes": ["s1"],
        },
        ["/externalRedis/sentinelNodes/0"],
    ),
    (
        "sentinel password not a string",
        {"externalRedis.sentinelPassword": 5},
        ["/externalRedis/sentinelPassword"],
    ),
    ("bad database sslmode", {"externalDatabase.sslmode": "on"}, ["/externalDatabase/sslmode"]),
    (
        "external database with only a password",
        {
            "postgresql.enabled": False,
            "externalDatabase.password": "x",
            "externalDatabase.sslmode": "require",
        },
        ["postgresql.enabled is false", "externalDatabase.host is empty"],
    ),
    (
        "SASL mechanism over plain SSL",
        {
            "kafka.enabled": False,
            "externalKafka.bootstrapServers": ["k:9094"],
            "externalKafka.securityProtocol": "SSL",
            "externalKafka.sasl.mechanism": "PLAIN",
        },
        ["externalKafka.sasl.mechanism is set", "externalKafka.securityProtocol is SSL"],
    ),
    (
        "bad SASL mechanism",
        {"externalKafka.sasl.mechanism": "GSSAPI"},
        ["/externalKafka/sasl/mechanism"],
    ),
    # PostgreSQL under Patroni (architecture: replication) and the spreading of every set
    (
        "postgresql architecture not offered",
        {"postgresql.architecture": "cluster"},
        ["postgresql", "/architecture", "'standalone', 'replication'"],
    ),
    (
        "postgresql with no instances",
        {"postgresql.architecture": "replication", "postgresql.replication.instances": 0},
        ["postgresql", "/replication/instances", "minimum"],
    ),
    (
        "synchronous replication with a single standby",
        {
            "postgresql.architecture": "replication",
            "postgresql.image.repository": "saga-stack.local/postgres",
            "postgresql.replication.synchronous": True,
            "postgresql.replication.instances": 2,
        },
        [
            "postgresql.replication.synchronous",
            "postgresql.replication.instances of at least 3 (it is 2)",
        ],
    ),
    (
        "patroni loop and retries longer than the leader lease",
        {
            "postgresql.architecture": "replication",
            "postgresql.image.repository": "saga-stack.local/postgres",
            "postgresql.replication.loopWait": 10,
            "postgresql.replication.retryTimeout": 10,
        },
        ["postgresql.replication.loopWait (10)", "retryTimeout (10)", "exceeds ttl (20)"],
    ),
    (
        "replication on the official image, which has no Patroni",
        {"postgresql.architecture": "replication"},
        ["postgresql.image.repository is postgres", "has no Patroni"],
    ),
    (
        "a PostgreSQL PDB that lets a drain take every server",
        {
            "postgresql.architecture": "replication",
            "postgresql.image.repository": "saga-stack.local/postgres",
            "postgresql.pdb.maxUnavailable": 3,
        },
        ["postgresql.pdb.maxUnavailable (3)", "postgresql.replication.instances (3)"],
    ),
    (
        "unknown key under postgresql.replication",
        {"postgresql.replication.replicas": 3},
        ["postgresql", "/replication", "'replicas'"],
    ),
    (
        "postgresql anti-affinity not offered",
        {"postgresql.podAntiAffinity": "always"},
        ["postgresql", "/podAntiAffinity", "'soft', 'hard'"],
    ),
    (
        "redis anti-affinity not offered",
        {"redis.podAntiAffinity": "always"},
        ["redis", "/podAntiAffinity", "'soft', 'hard'"],
    ),
    (
        "kafka anti-affinity not offered",
        {"kafka.podAntiAffinity": "always"},
        ["kafka", "/podAntiAffinity", "'soft', 'hard'"],
    ),
    (
        "no Kubernetes API port for Patroni",
        {"postgresql.networkPolicy.kubernetesApiPorts": []},
        ["postgresql", "/networkPolicy/kubernetesApiPorts", "minItems"],
    ),
    (
        "replication role name in upper case",
        {"postgresql.replication.replicationUsername": "Replicator"},
        ["postgresql", "/replication/replicationUsername"],
    ),
    (
        "replication role name with a dash",
        {"postgresql.replication.replicationUsername": "repl-user"},
        ["postgresql", "/replication/replicationUsername"],
    ),
    ("CA bundle key with a slash", {"caBundle.key": "certs/ca.crt"}, ["/caBundle/key"]),
    ("CA bundle unknown key", {"caBundle.existingSecrets": "ca"}, ["caBundle", "existingSecrets"]),
    (
        "CA bundle from a Secret and a ConfigMap",
        {"caBundle.existingSecret": "ca", "caBundle.existingConfigMap": "ca"},
        ["caBundle.existingSecret and caBundle.existingConfigMap are both set"],
    ),
    # API bearer tokens
    ("apiAuth.enabled as a string", {"apiAuth.enabled": "yes"}, ["/apiAuth/enabled"]),
    ("apiAuth tokens as a plain value", {"apiAuth.tokens": "secret"}, ["/apiAuth", "'tokens'"]),
    (
        "apiAuth Secret name in upper case",
        {"apiAuth.existingSecret": "My-Tokens"},
        ["/apiAuth/existingSecret"],
    ),
    (
        "apiAuth Secret key with a slash",
        {"apiAuth.existingSecretKey": "a/b"},
        ["/apiAuth/existingSecretKey"],
    ),
    # background jobs: schema
    ("jobs unknown key", {"jobs.workers": 3}, ["/jobs", "'workers'"]),
    ("jobs.enabled as a string", {"jobs.enabled": "yes"}, ["/jobs/enabled"]),
    ("jobs queue with a space", {"jobs.queue": "my queue"}, ["/jobs/queue"]),
    ("jobs concurrency zero", {"jobs.concurrency": 0}, ["/jobs/concurrency", "minimum"]),
    ("jobs lock below 500 ms", {"jobs.lockMs": 100}, ["/jobs/lockMs", "minimum"]),
    ("jobs attempts zero", {"jobs.attempts": 0}, ["/jobs/attempts", "minimum"]),
    ("jobs backoff negative", {"jobs.backoffMs": -1}, ["/jobs/backoffMs", "minimum"]),
    (
        "jobs metrics interval zero",
        {"jobs.metricsIntervalSeconds": 0},
        ["/jobs/metricsIntervalSeconds"],
    ),
    (
        "jobs autoscaling unknown key",
        {"jobs.autoscaling.targetCPU": 70},
        ["/jobs/autoscaling", "'targetCPU'"],
    ),
    (
        "jobs autoscaling target not a quantity",
        {"jobs.autoscaling.targetWaitingPerPod": "twenty"},
        ["/jobs/autoscaling/targetWaitingPerPod"],
    ),
    (
        "reconcile history limit negative",
        {"jobs.reconcile.failedJobsHistoryLimit": -1},
        ["/jobs/reconcile/failedJobsHistoryLimit", "minimum"],
    ),
    (
        "reconcile unknown key",
        {"jobs.reconcile.backoffLimit": 3},
        ["/jobs/reconcile", "'backoffLimit'"],
    ),
    # background jobs: relations (templates/validate.yaml)
    (
        "jobs autoscaling min above max",
        {
            "jobs.enabled": True,
            "jobs.autoscaling.enabled": True,
            "jobs.autoscaling.minReplicas": 6,
            "jobs.autoscaling.maxReplicas": 3,
        },
        ["jobs.autoscaling.minReplicas (6) is above jobs.autoscaling.maxReplicas (3)"],
    ),
    (
        "jobs pdb that protects nothing",
        {
            "jobs.enabled": True,
            "jobs.pdb.enabled": True,
            "jobs.replicas": 2,
            "jobs.pdb.maxUnavailable": 2,
        },
        ["jobs.pdb.maxUnavailable (2) must be below jobs.replicas (2)"],
    ),
    (
        "reconcile schedule of 4 fields",
        {"jobs.enabled": True, "jobs.reconcile.schedule": "*/5 * * *"},
        ["jobs.reconcile.schedule", "has 4 fields"],
    ),
    (
        "reconcile schedule as a macro",
        {"jobs.enabled": True, "jobs.reconcile.schedule": "@hourly"},
        ["jobs.reconcile.schedule", "has 1 fields"],
    ),
    (
        "reconcile schedule with a stray character",
        {"jobs.enabled": True, "jobs.reconcile.schedule": "*/5 * * * ;"},
        ["jobs.reconcile.schedule", "characters no cron field takes"],
    ),
    (
        "reconcile schedule empty",
        {"jobs.reconcile.schedule": ""},
        ["/jobs/reconcile/schedule"],
    ),
]


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize(
    ("values", "expected"), [(v, e) for _, v, e in CASES], ids=[c[0] for c in CASES]
)
def test_bad_values_are_refused_naming_the_key(values: dict[str, Any], expected: list[str]) -> None:
    message = render_error(values=values)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in helm's error:\n{message}"
