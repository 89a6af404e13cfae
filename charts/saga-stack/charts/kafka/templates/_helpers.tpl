{{/* Names, labels and the image reference. */}}

{{- define "kafka.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kafka.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{- define "kafka.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "kafka.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: saga-stack
{{- end }}


{{/* The image by digest when one is set (every node then runs the same bytes), else by tag. */}}
{{- define "kafka.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}


{{/* The client listener's name: CLIENT (SASL) with auth, else PLAINTEXT, the name the
     security protocol map would give it anyway. */}}
{{- define "kafka.clientListener" -}}
{{- ternary "CLIENT" "PLAINTEXT" .Values.auth.enabled }}
{{- end }}

{{/* The brokers' JAAS file: list (PLAIN login line) (admin user) (admin password). */}}
{{- define "kafka.jaasConfig" -}}
KafkaServer {
  {{ index . 0 }}
  user_{{ index . 1 }}={{ index . 2 | quote }};
  org.apache.kafka.common.security.scram.ScramLoginModule required;
};
{{ end }}
