{{/*
The app's environment, derived in this one place from whichever data-layer
mode is active (bundled subchart or external service). The ConfigMap renders
"saga-stack.appConfig" (read at start: a change rolls the pods through
checksum/config) and "saga-stack.runtimeEnv" (reloaded by running pods from the
runtime ConfigMap: no checksum); the Deployment and the hook Jobs add
"saga-stack.secretEnv". Hook Jobs render the config inline because a
pre-upgrade hook runs before this revision's ConfigMap exists.
*/}}

{{- define "saga-stack.appConfig" -}}
{{- $pg := .Values.postgresql }}
{{- $redis := .Values.redis }}
{{- $ca := include "saga-stack.caBundleFile" . -}}
PORT: {{ .Values.containerPort | quote }}
HTTP_KEEP_ALIVE_SECONDS: {{ .Values.httpKeepAliveSeconds | quote }}
{{- with .Values.tracing }}
{{- if .otlpEndpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .otlpEndpoint | quote }}
OTEL_SERVICE_NAME: {{ .serviceName | quote }}
OTEL_TRACES_SAMPLER: "parentbased_traceidratio"
OTEL_TRACES_SAMPLER_ARG: {{ .sampleRatio | toString | quote }}
{{- end }}
{{- end }}
SAGA_LEASE_SECONDS: {{ .Values.config.sagaLeaseSeconds | quote }}
SAGA_START_LEASE_SECONDS: {{ .Values.config.sagaStartLeaseSeconds | quote }}
SHUTDOWN_GRACE_SECONDS: {{ .Values.shutdown.appGraceSeconds | quote }}
DATABASE_POOL_SIZE: {{ .Values.config.databasePoolSize | quote }}
{{- if $pg.enabled }}
DATABASE_HOST: {{ include "saga-stack.subchartFullname" (list . "postgresql") | quote }}
DATABASE_PORT: {{ $pg.service.port | quote }}
DATABASE_NAME: {{ $pg.auth.database | quote }}
DATABASE_USER: {{ include "saga-stack.databaseAppRole" . | default $pg.auth.username | quote }}
DATABASE_SSLMODE: "disable"
{{- else }}
DATABASE_HOST: {{ .Values.externalDatabase.host | quote }}
DATABASE_PORT: {{ .Values.externalDatabase.port | quote }}
DATABASE_NAME: {{ .Values.externalDatabase.database | quote }}
DATABASE_USER: {{ .Values.externalDatabase.user | quote }}
DATABASE_SSLMODE: {{ .Values.externalDatabase.sslmode | quote }}
{{- if and $ca (has .Values.externalDatabase.sslmode (list "require" "verify-ca" "verify-full")) }}
DATABASE_SSLROOTCERT: {{ $ca | quote }}
{{- end }}
{{- end }}
{{- if and $redis.enabled $redis.sentinel.enabled }}
REDIS_MODE: "sentinel"
REDIS_SENTINEL_NODES: {{ printf "%s:%v" (include "saga-stack.subchartFullname" (list . "redis")) $redis.sentinel.port | quote }}
REDIS_SENTINEL_MASTER: {{ $redis.sentinel.masterSet | quote }}
REDIS_TLS: "false"
{{- else if $redis.enabled }}
REDIS_MODE: "standalone"
REDIS_HOST: {{ printf "%s-master" (include "saga-stack.subchartFullname" (list . "redis")) | quote }}
REDIS_PORT: {{ $redis.service.port | quote }}
REDIS_TLS: "false"
{{- else if eq .Values.externalRedis.mode "sentinel" }}
REDIS_MODE: "sentinel"
REDIS_SENTINEL_NODES: {{ join "," .Values.externalRedis.sentinelNodes | quote }}
REDIS_SENTINEL_MASTER: {{ .Values.externalRedis.sentinelMasterSet | quote }}
REDIS_TLS: {{ .Values.externalRedis.tls | quote }}
{{- else }}
REDIS_MODE: "standalone"
REDIS_HOST: {{ .Values.externalRedis.host | quote }}
REDIS_PORT: {{ .Values.externalRedis.port | quote }}
REDIS_TLS: {{ .Values.externalRedis.tls | quote }}
{{- end }}
{{- if include "saga-stack.redisAclUser" . }}
REDIS_USERNAME: {{ $redis.auth.acl.clientUsername | quote }}
{{- if $redis.sentinel.enabled }}
REDIS_SENTINEL_USERNAME: {{ $redis.auth.acl.clientUsername | quote }}
{{- end }}
{{- end }}
{{- if not $redis.enabled }}
{{- with .Values.externalRedis.username }}
REDIS_USERNAME: {{ . | quote }}
{{- end }}
{{- if and $ca .Values.externalRedis.tls }}
REDIS_TLS_CA_FILE: {{ $ca | quote }}
{{- end }}
{{- end }}
{{- if .Values.kafka.enabled }}
KAFKA_BOOTSTRAP_SERVERS: {{ printf "%s:%v" (include "saga-stack.subchartFullname" (list . "kafka")) .Values.kafka.service.port | quote }}
{{- if .Values.kafka.auth.enabled }}
KAFKA_SECURITY_PROTOCOL: "SASL_PLAINTEXT"
KAFKA_SASL_MECHANISM: "SCRAM-SHA-512"
KAFKA_SASL_USERNAME: {{ .Values.kafka.auth.clientUsername | quote }}
{{- else }}
KAFKA_SECURITY_PROTOCOL: "PLAINTEXT"
{{- end }}
{{- else }}
KAFKA_BOOTSTRAP_SERVERS: {{ join "," .Values.externalKafka.bootstrapServers | quote }}
KAFKA_SECURITY_PROTOCOL: {{ .Values.externalKafka.securityProtocol | quote }}
{{- with .Values.externalKafka.sasl.mechanism }}
KAFKA_SASL_MECHANISM: {{ . | quote }}
KAFKA_SASL_USERNAME: {{ $.Values.externalKafka.sasl.username | quote }}
{{- end }}
{{- if and $ca (has .Values.externalKafka.securityProtocol (list "SSL" "SASL_SSL")) }}
KAFKA_SSL_CA_FILE: {{ $ca | quote }}
{{- end }}
{{- end }}
KAFKA_TOPIC_EVENTS: {{ .Values.topics.events | quote }}
KAFKA_TOPIC_STARTS: {{ .Values.topics.starts | quote }}
KAFKA_TOPIC_DEAD_LETTER: {{ .Values.topics.deadLetter | quote }}
KAFKA_CONSUMER_GROUP: {{ .Values.topics.consumerGroup | quote }}
KAFKA_TOPIC_PARTITIONS: {{ .Values.topics.partitions | quote }}
KAFKA_TOPIC_REPLICATION_FACTOR: {{ .Values.topics.replicationFactor | quote }}
KAFKA_TOPIC_MIN_INSYNC_REPLICAS: {{ .Values.topics.minInsyncReplicas | quote }}
{{- if .Values.jobs.enabled }}
{{- /* Producer (serve's job relay) and worker settings alike: both sides must name the same queue. */}}
JOBS_ENABLED: "true"
JOBS_QUEUE: {{ .Values.jobs.queue | quote }}
JOBS_PREFIX: {{ .Values.jobs.prefix | quote }}
JOBS_CONCURRENCY: {{ .Values.jobs.concurrency | quote }}
JOBS_LOCK_MS: {{ .Values.jobs.lockMs | int64 | quote }}
JOBS_STALLED_INTERVAL_MS: {{ .Values.jobs.stalledIntervalMs | int64 | quote }}
JOBS_MAX_STALLED_COUNT: {{ .Values.jobs.maxStalledCount | quote }}
JOBS_ATTEMPTS: {{ .Values.jobs.attempts | quote }}
JOBS_BACKOFF_MS: {{ .Values.jobs.backoffMs | int64 | quote }}
JOBS_KEEP_COMPLETED: {{ .Values.jobs.keepCompleted | int64 | quote }}
JOBS_KEEP_FAILED: {{ .Values.jobs.keepFailed | int64 | quote }}
JOBS_METRICS_INTERVAL_SECONDS: {{ .Values.jobs.metricsIntervalSeconds | quote }}
JOBS_ACK_DELAY_MS: {{ .Values.jobs.ackDelayMs | int64 | quote }}
{{- end }}
{{- end }}

{{/*
The settings a running app takes from its runtime file without a restart
(RELOADABLE in app/src/saga_service/settings.py), set into the dict passed as
the second argument (a template can only return text; the file wants numbers).
*/}}
{{- define "saga-stack.runtimeSettings" -}}
{{- $root := index . 0 }}
{{- $into := index . 1 }}
{{- $config := $root.Values.config }}
{{- $_ := set $into "LOG_LEVEL" $config.logLevel }}
{{- $_ = set $into "LOCK_TTL_MS" ($config.lockTtlMs | int64) }}
{{- $_ = set $into "LOCK_ACQUIRE_TIMEOUT_MS" ($config.lockAcquireTimeoutMs | int64) }}
{{- $_ = set $into "SAGA_STEP_DELAY_MS" ($config.stepDelayMs | int64) }}
{{- end }}

{{/* The same settings as environment variables: images that do not watch the runtime
     file (docs/app-contract.md) still get every value, at their next start. */}}
{{- define "saga-stack.runtimeEnv" -}}
{{- $settings := dict }}
{{- include "saga-stack.runtimeSettings" (list . $settings) }}
{{- $lines := list }}
{{- range $name, $value := $settings }}
{{- $lines = append $lines (printf "%s: %s" $name ($value | toString | quote)) }}
{{- end }}
{{- join "\n" $lines }}
{{- end }}

{{/* The runtime file: JSON, since the app parses it with the standard library and JSON has
     no implicit types. A key that extraEnv sets is left out, so that extraEnv wins as it
     does for every other setting (the file would win over the environment). */}}
{{- define "saga-stack.runtimeFile" -}}
{{- $settings := dict }}
{{- include "saga-stack.runtimeSettings" (list . $settings) }}
{{- range .Values.extraEnv }}
{{- $_ := unset $settings .name }}
{{- end }}
{{- $settings | toPrettyJson }}
{{- end }}

{{/* The pod's place as resource attributes of its spans (after POD_NAME in the env list:
     a variable names only those defined before it). */}}
{{- define "saga-stack.tracingEnv" -}}
{{- if .Values.tracing.otlpEndpoint }}
- name: K8S_NAMESPACE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: K8S_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(K8S_NAMESPACE_NAME),k8s.node.name=$(K8S_NODE_NAME)"
{{- end }}
{{- end }}

{{/* Where each credential lives: the umbrella's existingSecret, a subchart's Secret, or the external service's. */}}
{{- define "saga-stack.secretEnv" -}}
{{- $appSecret := include "saga-stack.fullname" . }}
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
{{- if .Values.existingSecret }}
      name: {{ .Values.existingSecret }}
      key: database-password
{{- else if .Values.postgresql.enabled }}
      name: {{ include "saga-stack.postgresqlSecretName" . }}
      key: {{ ternary "app-password" "password" (not (empty (include "saga-stack.databaseAppRole" .))) }}
{{- else if .Values.externalDatabase.existingSecret }}
      name: {{ .Values.externalDatabase.existingSecret }}
      key: {{ .Values.externalDatabase.existingSecretPasswordKey }}
{{- else }}
      name: {{ $appSecret }}
      key: database-password
{{- end }}
{{- if or (and .Values.redis.enabled .Values.redis.auth.enabled) (and (not .Values.redis.enabled) (or .Values.externalRedis.password .Values.externalRedis.existingSecret)) .Values.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "saga-stack.redisPasswordRef" . | nindent 6 }}
{{- end }}
{{- if and .Values.redis.enabled .Values.redis.sentinel.enabled .Values.redis.auth.enabled }}
{{- /* The bundled Sentinels know the app's user too (or, without ACL users, the one password). */}}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "saga-stack.redisPasswordRef" . | nindent 6 }}
{{- else if and (not .Values.redis.enabled) (eq .Values.externalRedis.mode "sentinel") }}
{{- /* Optional in the Secrets you own: Sentinels without a password need no key. */}}
{{- if .Values.existingSecret }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret }}
      key: redis-sentinel-password
      optional: true
{{- else if .Values.externalRedis.existingSecret }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.existingSecretSentinelPasswordKey }}
      optional: true
{{- else if .Values.externalRedis.sentinelPassword }}
- name: REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $appSecret }}
      key: redis-sentinel-password
{{- end }}
{{- end }}
{{- if and .Values.kafka.enabled .Values.kafka.auth.enabled }}
{{- /* Optional: the upgrade that turns SASL on runs the pre-upgrade migrate Job before the
       Kafka Secret exists, and migrate does not use Kafka. The app's pods start after it. */}}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "saga-stack.subchartFullname" (list . "kafka") }}
      key: client-password
      optional: true
{{- else if and (not .Values.kafka.enabled) .Values.externalKafka.sasl.mechanism }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
{{- if .Values.existingSecret }}
      name: {{ .Values.existingSecret }}
      key: kafka-sasl-password
{{- else if .Values.externalKafka.sasl.existingSecret }}
      name: {{ .Values.externalKafka.sasl.existingSecret }}
      key: {{ .Values.externalKafka.sasl.existingSecretPasswordKey }}
{{- else }}
      name: {{ $appSecret }}
      key: kafka-sasl-password
{{- end }}
{{- end }}
{{- end }}

{{/* Where the Redis password lives (the name and key of a secretKeyRef). */}}
{{- define "saga-stack.redisPasswordRef" -}}
{{- if .Values.existingSecret }}
name: {{ .Values.existingSecret }}
key: redis-password
{{- else if include "saga-stack.redisAclUser" . }}
name: {{ .Values.redis.auth.existingSecret | default (include "saga-stack.subchartFullname" (list . "redis")) }}
key: client-password
{{- /* Optional: the upgrade that turns ACL users on runs the pre-upgrade migrate Job (which
       does not use Redis) before the Secret gains the key. The app's pods start after it. */}}
optional: true
{{- else if .Values.redis.enabled }}
name: {{ .Values.redis.auth.existingSecret | default (include "saga-stack.subchartFullname" (list . "redis")) }}
key: password
{{- else if .Values.externalRedis.existingSecret }}
name: {{ .Values.externalRedis.existingSecret }}
key: {{ .Values.externalRedis.existingSecretPasswordKey }}
{{- else }}
name: {{ include "saga-stack.fullname" . }}
key: redis-password
{{- end }}
{{- end }}

{{/* "true" when the app logs in to the bundled Redis as its own ACL user; empty otherwise. */}}
{{- define "saga-stack.redisAclUser" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.enabled .Values.redis.auth.acl.enabled }}true{{ end }}
{{- end }}

{{/* The CA bundle's path in the app's containers; empty without caBundle. */}}
{{- define "saga-stack.caBundleFile" -}}
{{- if or .Values.caBundle.existingSecret .Values.caBundle.existingConfigMap -}}
/etc/saga-stack/ca/{{ .Values.caBundle.key }}
{{- end -}}
{{- end }}

{{/* volumeMounts and volumes entries for the CA bundle (Deployment and hook Jobs). */}}
{{- define "saga-stack.caBundleMount" -}}
{{- if include "saga-stack.caBundleFile" . -}}
- name: ca-bundle
  mountPath: /etc/saga-stack/ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "saga-stack.caBundleVolume" -}}
{{- if .Values.caBundle.existingSecret -}}
- name: ca-bundle
  secret:
    secretName: {{ .Values.caBundle.existingSecret }}
    items:
      - key: {{ .Values.caBundle.key }}
        path: {{ .Values.caBundle.key }}
{{- else if .Values.caBundle.existingConfigMap -}}
- name: ca-bundle
  configMap:
    name: {{ .Values.caBundle.existingConfigMap }}
    items:
      - key: {{ .Values.caBundle.key }}
        path: {{ .Values.caBundle.key }}
{{- end }}
{{- end }}

{{/* The migrate Job's owner role, when the app connects as a role of its own (the bundled
PostgreSQL with `postgresql.auth.appUsername`): the migrations run as the owner, which then
grants the app's role its reads and writes. */}}
{{- define "saga-stack.databaseOwnerEnv" -}}
{{- if include "saga-stack.databaseAppRole" . }}
- name: DATABASE_OWNER_USER
  value: {{ .Values.postgresql.auth.username | quote }}
- name: DATABASE_OWNER_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "saga-stack.postgresqlSecretName" . }}
      key: password
{{- else if and (not .Values.postgresql.enabled) .Values.externalDatabase.ownerUser }}
- name: DATABASE_OWNER_USER
  value: {{ .Values.externalDatabase.ownerUser | quote }}
- name: DATABASE_OWNER_PASSWORD
  valueFrom:
    secretKeyRef:
{{- if .Values.existingSecret }}
      name: {{ .Values.existingSecret }}
      key: database-owner-password
{{- else if .Values.externalDatabase.existingSecret }}
      name: {{ .Values.externalDatabase.existingSecret }}
      key: {{ .Values.externalDatabase.existingSecretOwnerPasswordKey }}
{{- else }}
      name: {{ include "saga-stack.fullname" . }}
      key: database-owner-password
{{- end }}
{{- end }}
{{- end }}

{{/* The bundled PostgreSQL's role for the app, or empty when the app connects as the owner.
An upgrade from a release whose generated Secret has no `app-password` yet keeps the owner
once more: the pre-upgrade migrate Job runs before this revision's Secret exists, so it
could not give the role its password. The upgrade after it moves the app to the role. */}}
{{- define "saga-stack.databaseAppRole" -}}
{{- $auth := .Values.postgresql.auth }}
{{- if and .Values.postgresql.enabled $auth.appUsername }}
{{- $secret := dict }}
{{- if not $auth.existingSecret }}
{{- $secret = lookup "v1" "Secret" .Release.Namespace (include "saga-stack.postgresqlSecretName" .) }}
{{- end }}
{{- if or (not $secret) (hasKey ($secret.data | default dict) "app-password") }}
{{- $auth.appUsername }}
{{- end }}
{{- end }}
{{- end }}

{{- define "saga-stack.postgresqlSecretName" -}}
{{- .Values.postgresql.auth.existingSecret | default (include "saga-stack.subchartFullname" (list . "postgresql")) }}
{{- end }}
