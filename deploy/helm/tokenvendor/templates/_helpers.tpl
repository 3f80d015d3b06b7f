{{/*
The objects' name: fullnameOverride, else the release's name when it holds
the chart's (a release named tokenvendor names them tokenvendor, as the
kustomize base does), else release-chart.
*/}}
{{- define "tokenvendor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tokenvendor.canaryName" -}}
{{- printf "%s-canary" (include "tokenvendor.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tokenvendor.configName" -}}
{{- printf "%s-config" (include "tokenvendor.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The labels Helm's tooling expects on every object. */}}
{{- define "tokenvendor.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* What selects the service's pods: never the canary's. */}}
{{- define "tokenvendor.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokenvendor.labels" -}}
{{ include "tokenvendor.selectorLabels" . }}
app.kubernetes.io/component: credential-vendor
{{ include "tokenvendor.helmLabels" . }}
{{- end -}}

{{- define "tokenvendor.canarySelectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-canary
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokenvendor.canaryLabels" -}}
{{ include "tokenvendor.canarySelectorLabels" . }}
app.kubernetes.io/component: isolation-canary
{{ include "tokenvendor.helmLabels" . }}
{{- end -}}

{{- define "tokenvendor.appSelectorLabels" -}}
app.kubernetes.io/name: {{ .Values.sidecar.app.name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokenvendor.appLabels" -}}
{{ include "tokenvendor.appSelectorLabels" . }}
{{ include "tokenvendor.helmLabels" . }}
{{- end -}}

{{- define "tokenvendor.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- .Values.image.repository }}:{{ $tag }}{{ with .Values.image.digest }}@{{ . }}{{ end -}}
{{- end -}}

{{/*
The config value as a dict, as JSON (include returns text). Templates that
check it or take its ports use it; the ConfigMap carries the text as given.
*/}}
{{- define "tokenvendor.configJSON" -}}
{{- $c := fromYaml .Values.config -}}
{{- if hasKey $c "Error" -}}
{{- fail (printf "config: not a YAML mapping: %s" (get $c "Error")) -}}
{{- end -}}
{{- toJson $c -}}
{{- end -}}

{{/* The port of a host:port listener address from the config. */}}
{{- define "tokenvendor.portOf" -}}
{{- $port := regexFind "[0-9]+$" (toString .address) -}}
{{- if not $port -}}
{{- fail (printf "config: %s %q has no port" .setting (toString .address)) -}}
{{- end -}}
{{- $port -}}
{{- end -}}

{{- define "tokenvendor.listenPort" -}}
{{- $c := include "tokenvendor.configJSON" . | fromJson -}}
{{- include "tokenvendor.portOf" (dict "setting" "listen" "address" (required "config: listen is not set" $c.listen)) -}}
{{- end -}}

{{/* The probes and Prometheus use the admin listener. */}}
{{- define "tokenvendor.adminPort" -}}
{{- $c := include "tokenvendor.configJSON" . | fromJson -}}
{{- include "tokenvendor.portOf" (dict "setting" "admin_listen" "address" (required "config: admin_listen is not set: the probes and Prometheus use the admin listener" $c.admin_listen)) -}}
{{- end -}}

{{- define "tokenvendor.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .Values.podSecurityContext.runAsGroup }}
# Lets the non-root process read the IRSA web identity token, the TLS key
# and the Redis Secret (mode 0440, this group).
fsGroup: {{ .Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tokenvendor.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tokenvendor.probes" -}}
startupProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 1
  failureThreshold: 30
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 5
  failureThreshold: 2
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  periodSeconds: 10
  failureThreshold: 3
{{- end -}}

{{/* Keeps the Go heap under the container's memory limit. */}}
{{- define "tokenvendor.gomemlimit" -}}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      resource: limits.memory
{{- end -}}

{{/* nodeSelector and tolerations, when set; empty otherwise. */}}
{{- define "tokenvendor.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
The Redis Secret as a volume: url, key and, when passwordKey is set,
password, readable by the pod's fsGroup alone.
*/}}
{{- define "tokenvendor.redisVolume" -}}
- name: redis
  secret:
    secretName: {{ .Values.redis.secret.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.redis.secret.urlKey }}
        path: url
      - key: {{ .Values.redis.secret.keyKey }}
        path: key
      {{- with .Values.redis.secret.passwordKey }}
      - key: {{ . }}
        path: password
      {{- end }}
{{- end -}}

{{/*
The Secret of externalIdKey as a volume: the derived ExternalIds' key as
the file key, readable by the pod's fsGroup alone.
*/}}
{{- define "tokenvendor.externalIdVolume" -}}
- name: external-id
  secret:
    secretName: {{ .Values.externalIdKey.secret.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.externalIdKey.secret.keyKey }}
        path: key
{{- end -}}
