{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "broker.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "broker.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "broker.labels" -}}
{{ include "broker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "broker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "broker.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "broker.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The metrics port of worker i is ports.metrics + i; one named port per worker. */}}
{{- define "broker.metricsPortName" -}}
{{- if eq (int .index) 0 -}}metrics{{- else -}}{{ printf "metrics-%d" (int .index) }}{{- end -}}
{{- end -}}

{{/* Where the tenants ConfigMap is mounted, beside the configuration's folder. */}}
{{- define "broker.tenantsMountPath" -}}
/etc/helseid-broker/tenants
{{- end -}}

{{/* The broker's configuration: the sections the chart owns, then the user's. The pods' checksum
annotation hashes exactly this, so the tenants (their own ConfigMap) are no part of it. */}}
{{- define "broker.config" -}}
# Written by the helseid-broker chart; [server], [store], [telemetry] and [audit] come from its values.
# A top-level value: it must come before the first table. Relative to this file's folder.
tenants_directory = "../tenants"

[server]
listen = "0.0.0.0:{{ .Values.ports.grpc }}"
workers = {{ int .Values.workers }}

[store]
kind = "redis"
{{- if .Values.redis.urlSecret.name }}
url = { env = "BROKER_REDIS_URL" }
{{- else }}
url = {{ .Values.redis.url | quote }}
{{- end }}
encryption_key = { env = "BROKER_STORE_KEY" }

[telemetry]
log_format = {{ .Values.telemetry.logFormat | quote }}
log_level = {{ .Values.telemetry.logLevel | quote }}
prometheus_listen = "0.0.0.0:{{ .Values.ports.metrics }}"
{{- with .Values.telemetry.otlpEndpoint }}
otlp_endpoint = {{ . | quote }}
{{- end }}
trace_sample_ratio = {{ .Values.telemetry.traceSampleRatio }}

[audit]
directory = {{ .Values.audit.directory | quote }}
hash_key = { env = "BROKER_AUDIT_KEY" }
otel = {{ .Values.audit.otel }}
fsync = {{ .Values.audit.fsync }}
{{- if .Values.tls.enabled }}

[server.tls]
certificate = { file = "../tls/tls.crt" }
private_key = { file = "../tls/tls.key" }
{{- if .Values.tls.mutual }}
client_ca = { file = "../tls/ca.crt" }
{{- end }}
{{- end }}

{{ .Values.config }}
{{- end -}}

{{/* A probe: Kubernetes' own gRPC probe, or with TLS the image's health check (the gRPC probe has no TLS). */}}
{{- define "broker.probeAction" -}}
{{- if .Values.tls.enabled -}}
exec:
  command:
    - python
    - /opt/helseid-broker/healthcheck.py
    - --address
    - "localhost:{{ .Values.ports.grpc }}"
    - --tls-ca
    - /etc/helseid-broker/tls/ca.crt
    {{- if .Values.tls.mutual }}
    - --tls-cert
    - /etc/helseid-broker/tls/probe.crt
    - --tls-key
    - /etc/helseid-broker/tls/probe.key
    {{- end }}
{{- else -}}
grpc:
  port: {{ .Values.ports.grpc }}
  service: ""
{{- end -}}
{{- end -}}
