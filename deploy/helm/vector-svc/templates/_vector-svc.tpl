{{/* What vector-svc adds to the shared templates of codeintel-lib. */}}

{{/* Config keys the chart sets itself: the GPU device in GPU mode. */}}
{{- define "vector-svc.config" -}}
{{- if .Values.gpu.enabled }}
vector:
  device: gpu
{{- end }}
{{- end -}}

{{- define "vector-svc.env" -}}
{{- end -}}

{{- define "vector-svc.volumes" -}}
{{- end -}}

{{- define "vector-svc.volumeMounts" -}}
{{- end -}}
