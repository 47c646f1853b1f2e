{{- define "codeintel.lib.pdb" -}}
{{- if .Values.podDisruptionBudget.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "codeintel.lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "codeintel.lib.labels" . | nindent 4 }}
spec:
  {{- if hasKey .Values.podDisruptionBudget "minAvailable" }}
  minAvailable: {{ .Values.podDisruptionBudget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .Values.podDisruptionBudget.maxUnavailable | default 1 }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "codeintel.lib.selectorLabels" . | nindent 6 }}
{{- end -}}
{{- end -}}

{{/*
autoscaling/v2. With autoscaling.podsMetric.enabled the HPA scales on a per-pod custom metric
(served by the Prometheus adapter from the pods' own /metrics), else on CPU utilization.
*/}}
{{- define "codeintel.lib.hpa" -}}
{{- $a := .Values.autoscaling -}}
{{- if $a.enabled -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "codeintel.lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "codeintel.lib.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "codeintel.lib.fullname" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    {{- if ($a.podsMetric | default dict).enabled }}
    - type: Pods
      pods:
        metric:
          name: {{ $a.podsMetric.name }}
          {{- with $a.podsMetric.selector }}
          selector:
            {{- toYaml . | nindent 12 }}
          {{- end }}
        target:
          type: AverageValue
          averageValue: {{ $a.podsMetric.averageValue | quote }}
    {{- else }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* monitoring.coreos.com/v1 ServiceMonitor (a CRD of the Prometheus operator; off by default). */}}
{{- define "codeintel.lib.servicemonitor" -}}
{{- $m := .Values.metrics.serviceMonitor -}}
{{- if $m.enabled -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "codeintel.lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "codeintel.lib.labels" . | nindent 4 }}
    {{- with $m.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "codeintel.lib.selectorLabels" . | nindent 6 }}
      codeintel/service: primary
  namespaceSelector:
    matchNames: [{{ .Release.Namespace | quote }}]
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ $m.interval }}
      scrapeTimeout: {{ $m.scrapeTimeout }}
{{- end -}}
{{- end -}}

{{- define "codeintel.lib.serviceaccount" -}}
{{- if .Values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "codeintel.lib.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "codeintel.lib.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
{{- end -}}
{{- end -}}
