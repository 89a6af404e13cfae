{{/* Names, labels and the image reference. */}}

{{- define "redis.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Every Redis pod of the release, whatever its role. */}}
{{- define "redis.matchLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The pods of one StatefulSet: (list $ "master"), "replica" or "node" (with
Sentinel every pod is a node; the master role moves between them).
*/}}
{{- define "redis.selectorLabels" -}}
{{ include "redis.matchLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* (list $ component): objects of one role; "redis" for objects shared by every role. */}}
{{- define "redis.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version }}
{{ include "redis.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: saga-stack
{{- end }}

{{- define "redis.secretName" -}}
{{- default (include "redis.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{/* The headless Service's domain: <pod>.<this> is a pod's stable name. */}}
{{- define "redis.headlessDomain" -}}
{{- printf "%s-hl.%s.svc.%s" (include "redis.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/* The image by digest when one is set (every node then runs the same bytes), else by tag. */}}
{{- define "redis.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{/*
ACL rules (after `user NAME on >PASSWORD`). The app: its keys, no channels, every command
outside @dangerous but INFO (the job queue's library reads the server version with it)
and CLIENT SETNAME (it names its connections; not dangerous since Redis 7, listed for 6).
*/}}
{{- define "redis.clientRules" -}}
resetchannels {{ range .Values.auth.acl.clientKeyPatterns }}~{{ . }} {{ end }}+@all -@dangerous +info +client|setname
{{- end }}

{{/* The replicas' link to the master, as Redis documents it. */}}
{{- define "redis.replicationRules" -}}
-@all +psync +replconf +ping
{{- end }}

{{/* What a Sentinel sends a monitored node (Redis documents this set; REPLICAOF is SLAVEOF's newer name). */}}
{{- define "redis.sentinelRules" -}}
allchannels -@all +multi +exec +slaveof +replicaof +ping +subscribe +publish +config|rewrite +role +info +client|setname +client|kill +script|kill
{{- end }}

{{/* The app on a Sentinel: finding the master and nothing else (no FAILOVER, SET, RESET, REMOVE). */}}
{{- define "redis.sentinelClientRules" -}}
-@all +ping +hello +client|setname +sentinel|get-master-addr-by-name +sentinel|masters +sentinel|master +sentinel|replicas +sentinel|slaves +sentinel|sentinels
{{- end }}

{{/*
(list $ KEY...): the env of a container that needs these passwords. `password` is the
default user's, as REDISCLI_AUTH so that redis-cli (probes, scripts) logs in with it; the
ACL users' keys are read only with `auth.acl.enabled`.
*/}}
{{- define "redis.passwordEnv" -}}
{{- $root := index . 0 -}}
{{- $vars := dict "password" "REDISCLI_AUTH" "client-password" "REDIS_CLIENT_PASSWORD" "replication-password" "REDIS_REPLICATION_PASSWORD" "sentinel-password" "REDIS_SENTINEL_PASSWORD" -}}
{{- if $root.Values.auth.enabled -}}
env:
{{- range $key := rest . }}
{{- if or (eq $key "password") $root.Values.auth.acl.enabled }}
  - name: {{ index $vars $key }}
    valueFrom:
      secretKeyRef:
        name: {{ include "redis.secretName" $root }}
        key: {{ $key }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
