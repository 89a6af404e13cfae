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
