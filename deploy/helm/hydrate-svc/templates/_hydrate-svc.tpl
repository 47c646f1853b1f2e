{{/* What hydrate-svc adds to the shared templates of codeintel-lib: nothing beyond the common shape. */}}

{{/* Config keys the chart sets itself besides hydrate.addr, hydrate.metrics_addr and data.root: none. */}}
{{- define "hydrate-svc.config" -}}
{{- end -}}

{{- define "hydrate-svc.env" -}}
{{- end -}}

{{- define "hydrate-svc.volumes" -}}
{{- end -}}

{{- define "hydrate-svc.volumeMounts" -}}
{{- end -}}
