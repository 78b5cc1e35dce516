{{/* Chart name, overridable. */}}
{{- define "secmon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name: "secmon" for a release named secmon, else RELEASE-secmon. */}}
{{- define "secmon.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "secmon.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "secmon.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "secmon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secmon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "secmon.labels" -}}
{{ include "secmon.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "secmon.secretName" -}}
{{- default (printf "%s-secrets" (include "secmon.fullname" .)) .Values.secrets.name }}
{{- end }}

{{- define "secmon.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "secmon.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/*
Checks that fail the render with a message saying what to set, where the
chart can tell that secmon would refuse to start.
*/}}
{{- define "secmon.validate" -}}
{{- $v := .Values }}
{{- if and (eq $v.environment "production") (not $v.tls.enabled) }}
{{- fail "environment production needs tls.enabled: true (secmon refuses to start without TLS)" }}
{{- end }}
{{- if and $v.vault.enabled (not $v.vault.addr) }}
{{- fail "vault.enabled needs vault.addr (e.g. https://vault.vault.svc:8200)" }}
{{- end }}
{{- if $v.secrets.create }}
{{- if and (eq $v.environment "production") (lt (len $v.secrets.jwtSecret) 32) }}
{{- fail "secrets.jwtSecret must be at least 32 bytes in production (openssl rand -base64 48), or use secrets.create: false" }}
{{- end }}
{{- if and (eq $v.environment "production") (not $v.secrets.metricsToken) }}
{{- fail "secrets.metricsToken is required in production, or use secrets.create: false" }}
{{- end }}
{{- if and $v.bootstrapAdmin (not $v.secrets.adminPassword) }}
{{- fail "bootstrapAdmin needs secrets.adminPassword (or set bootstrapAdmin: false)" }}
{{- end }}
{{- if and $v.postgres.enabled (not $v.secrets.databaseUrl) }}
{{- fail "postgres.enabled needs secrets.databaseUrl" }}
{{- end }}
{{- if and $v.redis.enabled (not $v.secrets.redisUrl) }}
{{- fail "redis.enabled needs secrets.redisUrl" }}
{{- end }}
{{- if and $v.vault.enabled (not $v.secrets.vaultToken) }}
{{- fail "vault.enabled needs secrets.vaultToken" }}
{{- end }}
{{- end }}
{{- if and $v.ingress.enabled (not $v.ingress.host) }}
{{- fail "ingress.enabled needs ingress.host" }}
{{- end }}
{{- end }}

{{/* The config files: the chart's copies, replaced by config.files, the environment's merged with config.overrides. */}}
{{- define "secmon.configFiles" -}}
{{- $files := dict }}
{{- range $name := list "config.yaml" "ports.yaml" "services.yaml" "development.yaml" "production.yaml" }}
{{- $_ := set $files $name ($.Files.Get (printf "files/%s" $name)) }}
{{- end }}
{{- range $name, $text := .Values.config.files }}
{{- $_ := set $files $name $text }}
{{- end }}
{{- with .Values.config.overrides }}
{{- $envFile := printf "%s.yaml" $.Values.environment }}
{{- $merged := mustMergeOverwrite (fromYaml (get $files $envFile)) (deepCopy .) }}
{{- $_ := set $files $envFile (printf "# %s with the chart's config.overrides merged in\n%s" $envFile (toYaml $merged)) }}
{{- end }}
{{- toYaml $files }}
{{- end }}
