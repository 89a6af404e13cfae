{{/* Names, labels, the image reference and the init scripts. */}}

{{- define "postgresql.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "postgresql.replicated" -}}
{{- if eq .Values.architecture "replication" }}true{{ end }}
{{- end }}

{{- /* Replicated servers change roles, so their component names the set; Patroni's `role` label names the role. */}}
{{- define "postgresql.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: {{ ternary "server" "primary" (eq .Values.architecture "replication") }}
{{- end }}

{{- define "postgresql.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{ include "postgresql.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: saga-stack
{{- end }}

{{- define "postgresql.secretName" -}}
{{- default (include "postgresql.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "postgresql.serviceAccountName" -}}
{{- include "postgresql.fullname" . }}
{{- end }}

{{- /* Patroni's DCS objects: <fullname> (leader, also the primary Service's Endpoints) and <fullname>-config. */}}
{{- define "postgresql.patroniScope" -}}
{{- include "postgresql.fullname" . }}
{{- end }}

{{/* The image by digest when one is set (every node then runs the same bytes), else by tag. */}}
{{- define "postgresql.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}
{{- end }}

{{/* The scripts run once, when a new database is initialised: the app's role (so that the
app can connect, and be Ready, before its migrate Job runs and grants it its rights), then
the user's `initdbScripts`. */}}
{{- define "postgresql.initdbScripts" -}}
{{- $scripts := dict }}
{{- if .Values.auth.appUsername }}
{{- $_ := set $scripts "00-saga-app-role.sh" (include "postgresql.appRoleScript" .) }}
{{- end }}
{{- $scripts = merge $scripts .Values.initdbScripts }}
{{- if $scripts }}
{{- toYaml $scripts }}
{{- end }}
{{- end }}

{{- define "postgresql.appRoleScript" -}}
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  --set role="$POSTGRES_APP_USER" --set password="$POSTGRES_APP_PASSWORD" <<'SQL'
CREATE ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'password';
SQL
{{- end }}

{{- define "postgresql.appRoleEnv" -}}
{{- if .Values.auth.appUsername }}
- name: POSTGRES_APP_USER
  value: {{ .Values.auth.appUsername | quote }}
- name: POSTGRES_APP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "postgresql.secretName" . }}
      key: app-password
{{- end }}
{{- end }}
