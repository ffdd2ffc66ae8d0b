{{/* Chart name, truncated to a DNS label. */}}
{{- define "gastown-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-based unless the release name already contains the chart name. */}}
{{- define "gastown-operator.fullname" -}}
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

{{- define "gastown-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gastown-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gastown-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gastown-operator.labels" -}}
helm.sh/chart: {{ include "gastown-operator.chart" . }}
{{ include "gastown-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "gastown-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gastown-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gastown-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Names the operator is told about (GASTOWN_WEBHOOK_*), so they match what is rendered. */}}
{{- define "gastown-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "gastown-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gastown-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "gastown-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gastown-operator.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "gastown-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gastown-operator.webhookConfigName" -}}
{{- include "gastown-operator.fullname" . }}
{{- end }}

{{- define "gastown-operator.dispatchPolicyName" -}}
{{- printf "%s-dispatch" (include "gastown-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gastown-operator.finalizerPolicyName" -}}
{{- printf "%s-finalizer" (include "gastown-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gastown-operator.leaseName" -}}
{{- include "gastown-operator.fullname" . }}
{{- end }}

{{/* Whether the operator runs in the cluster (false in devMode: it runs on your machine). */}}
{{- define "gastown-operator.inCluster" -}}
{{- if not .Values.devMode.externalWebhookURL }}true{{ end }}
{{- end }}

{{/* Whether the operator manages the webhook certificate itself (Secret + caBundle patch). */}}
{{- define "gastown-operator.selfManagedCerts" -}}
{{- if and .Values.webhook.enabled (not .Values.webhook.certManager.enabled) (not .Values.devMode.caBundle) }}true{{ end }}
{{- end }}

{{- define "gastown-operator.certificateName" -}}
{{- printf "%s-webhook" (include "gastown-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gastown-operator.webhookPath" -}}
/validate-polecat
{{- end }}

{{/* The rules the operator needs on Polecats, their Pods and events, wherever it serves them. */}}
{{- define "gastown-operator.workloadRules" -}}
# create: a Convoy's Polecats; delete: ttlSecondsAfterFinished.
- apiGroups: ["gastown.gastown.io"]
  resources: ["polecats"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: ["gastown.gastown.io"]
  resources: ["polecats/status"]
  verbs: ["get", "update", "patch"]
- apiGroups: ["gastown.gastown.io"]
  resources: ["polecats/finalizers", "convoys/finalizers"]
  verbs: ["update"]
# Rigs are read for their defaults and capacity; their status counts the rig's Polecats.
- apiGroups: ["gastown.gastown.io"]
  resources: ["rigs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["gastown.gastown.io"]
  resources: ["rigs/status"]
  verbs: ["get", "update", "patch"]
- apiGroups: ["gastown.gastown.io"]
  resources: ["convoys"]
  verbs: ["get", "list", "watch", "update", "patch"]
- apiGroups: ["gastown.gastown.io"]
  resources: ["convoys/status"]
  verbs: ["get", "update", "patch"]
# Kubernetes mode: the agent Pods, owned by their Polecat.
- apiGroups: [""]
  resources: ["pods"]
  # patch: stopping a Pod in place (a shorter activeDeadlineSeconds) keeps its report.
  verbs: ["create", "get", "list", "watch", "delete", "patch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Events about Polecats (the recorder uses events.k8s.io/v1).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.podDefaults.checkReferences }}
# podDefaults.checkReferences: does the Secret/ConfigMap a Pod names exist? (no list, no watch)
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get"]
{{- end }}
{{- end }}
