{{/* What lexical-svc adds to the shared templates of codeintel-lib: nothing beyond the common shape. */}}

{{/* Config keys the chart sets itself besides lexical.addr, lexical.metrics_addr and data.root: none. */}}
{{- define "lexical-svc.config" -}}
{{- end -}}

{{- define "lexical-svc.env" -}}
{{- end -}}

{{- define "lexical-svc.volumes" -}}
{{- end -}}

{{- define "lexical-svc.volumeMounts" -}}
{{- end -}}
