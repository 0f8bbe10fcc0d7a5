{{/* Names ------------------------------------------------------------------------------------------ */}}

{{- define "gatehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.fullname" -}}
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

{{/* The name of one part of the release: (list $ "web") -> gatehouse-web. */}}
{{- define "gatehouse.componentName" -}}
{{- printf "%s-%s" (include "gatehouse.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gatehouse.secretName" -}}
{{- .Values.existingSecret | default (include "gatehouse.fullname" .) }}
{{- end }}

{{- define "gatehouse.batchFilesClaim" -}}
{{- .Values.batchFiles.persistence.existingClaim | default (include "gatehouse.componentName" (list . "batch-files")) }}
{{- end }}

{{- define "gatehouse.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/* Labels: (dict "root" $ "component" "web"). The selector labels never change across upgrades. */}}

{{- define "gatehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gatehouse.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "gatehouse.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gatehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | toString | replace "+" "_" | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: gatehouse
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{/* A pod template's labels: the extra podLabels first, so they cannot replace the selector's. */}}
{{- define "gatehouse.podLabels" -}}
{{- $labels := merge (include "gatehouse.labels" . | fromYaml) (deepCopy .root.Values.podLabels) }}
{{- toYaml $labels }}
{{- end }}

{{/* Pod annotations: a checksum of the ConfigMaps, so a change of configuration rolls every pod. */}}
{{- define "gatehouse.podAnnotations" -}}
checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
{{- with .root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Configuration ---------------------------------------------------------------------------------- */}}

{{/* The variables that come from the Secret, never from values. */}}
{{- define "gatehouse.requiredSecretEnv" -}}
{{- list "SECRET_KEY" "DATABASE_URL" "REDIS_URL" | toJson }}
{{- end }}
{{- define "gatehouse.optionalSecretEnv" -}}
{{- $names := list "CELERY_BROKER_URL" "CHANNEL_LAYER_REDIS_URL" "METRICS_TOKEN" "OIDC_RP_CLIENT_SECRET" }}
{{- if .Values.batchFiles.s3.bucket }}
{{- $names = concat $names (list "BATCH_FILES_S3_ACCESS_KEY_ID" "BATCH_FILES_S3_SECRET_ACCESS_KEY") }}
{{- end }}
{{- toJson $names }}
{{- end }}
{{- define "gatehouse.secretEnvNames" -}}
{{- list "SECRET_KEY" "DATABASE_URL" "REDIS_URL" "CELERY_BROKER_URL" "CHANNEL_LAYER_REDIS_URL" "METRICS_TOKEN" "OIDC_RP_CLIENT_SECRET" "BATCH_FILES_S3_ACCESS_KEY_ID" "BATCH_FILES_S3_SECRET_ACCESS_KEY" | toJson }}
{{- end }}

{{/* The non-secret environment, as a YAML mapping: values' config, with ALLOWED_HOSTS completed and
     where batch files live. The ConfigMap holds it; the migration hook, which runs before the
     ConfigMap exists, gets it inline. */}}
{{- define "gatehouse.configEnv" -}}
{{- $env := dict }}
{{- range $name, $value := .Values.config }}
{{- if not (regexMatch "^[A-Za-z_][A-Za-z0-9_]*$" $name) }}
{{- fail (printf "config.%s is not an environment variable name" $name) }}
{{- end }}
{{- if has $name (include "gatehouse.secretEnvNames" $ | fromJsonArray) }}
{{- fail (printf "config.%s is a secret: put it in the Secret named by existingSecret, not in values" $name) }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $env $name (toString $value) }}
{{- end }}
{{- end }}
{{- /* ALLOWED_HOSTS: the operator's, the ingress hosts, the Service's in-cluster names, the probe's. */}}
{{- $hosts := list }}
{{- range splitList "," (get $env "ALLOWED_HOSTS") }}
{{- if trim . }}
{{- $hosts = append $hosts (trim .) }}
{{- end }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- range .Values.ingress.hosts }}
{{- if .host }}
{{- /* Django writes a wildcard subdomain as ".example.org". */}}
{{- $hosts = append $hosts (regexReplaceAll "^\\*\\." .host ".") }}
{{- end }}
{{- end }}
{{- end }}
{{- $service := include "gatehouse.componentName" (list . "web") }}
{{- $namespace := .Release.Namespace }}
{{- $hosts = concat $hosts (list $service (printf "%s.%s" $service $namespace) (printf "%s.%s.svc" $service $namespace) (printf "%s.%s.svc.%s" $service $namespace .Values.clusterDomain) "127.0.0.1") }}
{{- $_ := set $env "ALLOWED_HOSTS" (uniq $hosts | join ",") }}
{{- with .Values.batchFiles.s3 }}
{{- if .bucket }}
{{- $_ := set $env "BATCH_FILES_S3_BUCKET" (toString .bucket) }}
{{- $_ := set $env "BATCH_FILES_S3_ENDPOINT_URL" (toString (.endpointUrl | default "")) }}
{{- $_ := set $env "BATCH_FILES_S3_REGION" (toString (.region | default "")) }}
{{- $_ := set $env "BATCH_FILES_S3_PREFIX" (toString (.prefix | default "batch-files")) }}
{{- else }}
{{- $_ := set $env "BATCH_FILES_DIR" "/app/.run/batch-files" }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* The secret variables, each from its key of the Secret, then values' extraEnv. */}}
{{- define "gatehouse.secretEnv" -}}
{{- $secret := include "gatehouse.secretName" . }}
{{- $keys := .Values.secretKeys | default dict }}
{{- range $name := include "gatehouse.requiredSecretEnv" . | fromJsonArray }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ get $keys $name | default $name }}
{{- end }}
{{- range $name := include "gatehouse.optionalSecretEnv" . | fromJsonArray }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ get $keys $name | default $name }}
      optional: true
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A long-running container's environment: the ConfigMap, then the Secret's keys. */}}
{{- define "gatehouse.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "gatehouse.componentName" (list . "config") }}
env:
  {{- include "gatehouse.secretEnv" . | trim | nindent 2 }}
{{- end }}

{{/* Pods ------------------------------------------------------------------------------------------- */}}

{{/* What every Gatehouse pod's spec has: (dict "root" $ "podSecurityContext" optional-override). */}}
{{- define "gatehouse.podCommon" -}}
{{- $root := .root }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: false
# No variables for every Service in the namespace: Gatehouse reads only its own.
enableServiceLinks: false
securityContext:
  {{- toYaml (.podSecurityContext | default $root.Values.podSecurityContext) | nindent 2 }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Volumes: (dict "root" $ "batchFiles" bool "scripts" bool). */}}
{{- define "gatehouse.volumes" -}}
{{- $root := .root }}
- name: tmp
  emptyDir:
    {{- with $root.Values.tmp.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- if and .batchFiles (not $root.Values.batchFiles.s3.bucket) }}
- name: batch-files
  persistentVolumeClaim:
    claimName: {{ include "gatehouse.batchFilesClaim" $root }}
{{- end }}
{{- if .scripts }}
- name: scripts
  configMap:
    name: {{ include "gatehouse.componentName" (list $root "scripts") }}
{{- end }}
{{- with $root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "gatehouse.volumeMounts" -}}
{{- $root := .root }}
- name: tmp
  mountPath: /tmp
{{- if and .batchFiles (not $root.Values.batchFiles.s3.bucket) }}
- name: batch-files
  mountPath: /app/.run/batch-files
{{- end }}
{{- if .scripts }}
- name: scripts
  mountPath: /etc/gatehouse
  readOnly: true
{{- end }}
{{- with $root.Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* A Celery container: (dict "root" $ "name" "worker" "args" (list ...) "resources" {...}). */}}
{{- define "gatehouse.celeryContainer" -}}
{{- $root := .root }}
- name: {{ .name }}
  image: {{ include "gatehouse.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command:
    {{- toYaml (concat (list "celery" "-A" "portal") .args) | nindent 4 }}
  {{- include "gatehouse.env" $root | nindent 2 }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    {{- include "gatehouse.volumeMounts" (dict "root" $root "batchFiles" .batchFiles) | trim | nindent 4 }}
{{- end }}
