{{/* Names and labels only. */}}

{{- define "saga-stack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "saga-stack.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "saga-stack.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "saga-stack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "saga-stack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: app
{{- end }}

{{/* Labels of every object of the release, without the component. */}}
{{- define "saga-stack.commonLabels" -}}
helm.sh/chart: {{ include "saga-stack.chart" . }}
app.kubernetes.io/name: {{ include "saga-stack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: saga-stack
{{- end }}

{{/* Labels of the app's objects. */}}
{{- define "saga-stack.labels" -}}
{{ include "saga-stack.commonLabels" . }}
app.kubernetes.io/component: app
{{- end }}

{{- define "saga-stack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "saga-stack.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "saga-stack.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Names of the bundled data-layer subcharts' objects (their fullname rule). */}}
{{- define "saga-stack.subchartFullname" -}}
{{- $root := index . 0 }}
{{- $chart := index . 1 }}
{{- $values := index $root.Values $chart }}
{{- if $values.fullnameOverride }}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains $chart $root.Release.Name }}
{{- $root.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" $root.Release.Name $chart | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels that admit a pod through the bundled data layer's NetworkPolicies. */}}
{{- define "saga-stack.dataClientLabels" -}}
saga-stack.io/postgresql-client: "true"
saga-stack.io/redis-client: "true"
saga-stack.io/kafka-client: "true"
{{- end }}

{{/* The app pods' tolerations: the user's, plus short NoExecute tolerations for a lost node
     (instead of the cluster's 300 s) unless the user tolerates those keys already. */}}
{{- define "saga-stack.tolerations" -}}
{{- $tolerations := list }}
{{- $keys := dict }}
{{- range .Values.tolerations }}
{{- $tolerations = append $tolerations . }}
{{- with .key }}{{ $_ := set $keys . true }}{{ end }}
{{- end }}
{{- if .Values.nodeLossTolerationSeconds }}
{{- range list "node.kubernetes.io/not-ready" "node.kubernetes.io/unreachable" }}
{{- if not (hasKey $keys .) }}
{{- $tolerations = append $tolerations (dict "key" . "operator" "Exists" "effect" "NoExecute" "tolerationSeconds" (int $.Values.nodeLossTolerationSeconds)) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $tolerations }}
{{- end }}

{{/* The job workers' selector and labels (jobs.enabled). */}}
{{- define "saga-stack.workerSelectorLabels" -}}
app.kubernetes.io/name: {{ include "saga-stack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "saga-stack.workerLabels" -}}
{{ include "saga-stack.commonLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "saga-stack.workerName" -}}
{{- include "saga-stack.fullname" . | trunc 56 | trimSuffix "-" }}-worker
{{- end }}

{{- define "saga-stack.reconcileName" -}}
{{- include "saga-stack.fullname" . | trunc 42 | trimSuffix "-" }}-reconcile
{{- end }}

{{/* The console's labels. Its own app.kubernetes.io/name, so that the app's NetworkPolicy
     (which selects the app's name) never applies to it: the console gets its own, narrower
     one and no path to the data layer. */}}
{{- define "saga-stack.consoleSelectorLabels" -}}
app.kubernetes.io/name: {{ include "saga-stack.name" . }}-console
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: console
{{- end }}

{{- define "saga-stack.consoleLabels" -}}
helm.sh/chart: {{ include "saga-stack.chart" . }}
{{ include "saga-stack.consoleSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: saga-stack
{{- end }}

{{- define "saga-stack.consoleFullname" -}}
{{- include "saga-stack.fullname" . | trunc 55 | trimSuffix "-" }}-console
{{- end }}

{{/* The console's image: console.image.* where set, else the app's. */}}
{{- define "saga-stack.consoleImage" -}}
{{- $image := .Values.console.image }}
{{- $repository := default .Values.image.repository $image.repository }}
{{- if $image.digest }}
{{- printf "%s@%s" $repository $image.digest }}
{{- else if $image.repository }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion $image.tag) }}
{{- else if $image.tag }}
{{- printf "%s:%s" $repository $image.tag }}
{{- else }}
{{- include "saga-stack.image" . }}
{{- end }}
{{- end }}

{{/* The port of console.prometheusUrl: explicit, else the scheme's. */}}
{{- define "saga-stack.consolePrometheusPort" -}}
{{- $url := urlParse .Values.console.prometheusUrl }}
{{- $hostPort := splitList ":" $url.host }}
{{- if gt (len $hostPort) 1 }}{{ last $hostPort }}{{ else if eq $url.scheme "https" }}443{{ else }}80{{ end }}
{{- end }}

{{/* The port of tracing.otlpEndpoint: explicit, else the scheme's. */}}
{{- define "saga-stack.otlpPort" -}}
{{- $url := urlParse .Values.tracing.otlpEndpoint }}
{{- $hostPort := splitList ":" $url.host }}
{{- if gt (len $hostPort) 1 }}{{ last $hostPort }}{{ else if eq $url.scheme "https" }}443{{ else }}80{{ end }}
{{- end }}

{{/* The app's and the workers' egress rule to the span collector, when spans are exported. */}}
{{- define "saga-stack.collectorEgress" -}}
{{- if .Values.tracing.otlpEndpoint }}
    - to:
        {{- toYaml .Values.tracing.collectorPeers | nindent 8 }}
      ports:
        - port: {{ include "saga-stack.otlpPort" . }}
          protocol: TCP
{{- end }}
{{- end }}

{{/* Where the API tokens live (the name and key of a secretKeyRef): the user's Secret or the one the chart generates. */}}
{{- define "saga-stack.apiTokensRef" -}}
{{- if .Values.apiAuth.existingSecret -}}
name: {{ .Values.apiAuth.existingSecret }}
key: {{ .Values.apiAuth.existingSecretKey }}
{{- else -}}
name: {{ include "saga-stack.fullname" . }}-api-tokens
key: api-tokens
{{- end -}}
{{- end }}

{{- /* Where clients reach HOST through the ingress controller or Gateway (clientPorts):
       include "saga-stack.clientUrl" (dict "root" $ "scheme" "https" "host" "saga.localhost") */}}
{{- define "saga-stack.clientUrl" -}}
{{- $port := index .root.Values.clientPorts .scheme | int -}}
{{- printf "%s://%s" .scheme .host -}}
{{- if $port }}:{{ $port }}{{ end -}}
{{- end }}

{{/* "true" when this upgrade turns SASL on for a bundled Kafka that runs without it (a
     release from before kafka.auth, or one that had it off): until the brokers restart
     they speak PLAINTEXT, so the app's Kafka hook waits until after the upgrade. */}}
{{- define "saga-stack.kafkaAuthTurningOn" -}}
{{- if and .Values.kafka.enabled .Values.kafka.auth.enabled }}
{{- $brokers := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "saga-stack.subchartFullname" (list . "kafka")) }}
{{- if $brokers }}
{{- range (index $brokers.spec.template.spec.containers 0).env }}
{{- if and (eq .name "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP") (not (contains "SASL" (.value | default ""))) }}true{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Kafka access Job of this revision (templates/kafka-access-job.yaml). */}}
{{- define "saga-stack.kafkaAccessJobName" -}}
{{- printf "%s-kafka-access-r%d" (include "saga-stack.fullname" . | trunc 40 | trimSuffix "-") (int .Release.Revision) }}
{{- end }}
