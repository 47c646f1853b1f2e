{{/*
Two Services per chart: a ClusterIP one (one stable address; kube-proxy balances connections,
not gRPC calls) and a headless one (clusterIP: None; its DNS name resolves to every ready pod,
which is what answer-svc expands and balances over, call by call). Only the ClusterIP one
carries codeintel/service: primary, which the ServiceMonitor selects (so that Prometheus
scrapes each pod once).
*/}}
{{- define "codeintel.lib.services" -}}
{{- $fullname := include "codeintel.lib.fullname" . -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "codeintel.lib.labels" . | nindent 4 }}
    codeintel/service: primary
  {{- with .Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .Values.service.type }}
  selector:
    {{- include "codeintel.lib.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .Values.ports.grpc }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    - name: metrics
      port: {{ .Values.ports.metrics }}
      targetPort: metrics
      protocol: TCP
      appProtocol: http
---
apiVersion: v1
kind: Service
metadata:
  name: {{ include "codeintel.lib.headlessOf" $fullname }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "codeintel.lib.labels" . | nindent 4 }}
    codeintel/service: headless
spec:
  clusterIP: None
  publishNotReadyAddresses: false
  selector:
    {{- include "codeintel.lib.selectorLabels" . | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .Values.ports.grpc }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
{{- end -}}
