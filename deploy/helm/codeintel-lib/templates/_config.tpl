{{/*
The data root a service that reads indexes mounts or names, as JSON: the chart's dataRoot with
the umbrella's global.codeintel.dataRoot over it (readOnly stays the chart's). Empty for a chart
without dataRoot (answer-svc).
  type: pvc  -> a PersistentVolumeClaim mounted at mountPath; data.root = mountPath
  type: s3   -> data.root = s3.url; credentials from s3.existingSecret; an emptyDir local cache
*/}}
{{- define "codeintel.lib.dataRoot" -}}
{{- if hasKey .Values "dataRoot" -}}
{{- include "codeintel.lib.resolveDataRoot" (dict "top" . "base" .Values.dataRoot) -}}
{{- end -}}
{{- end -}}

{{/* .base (a dataRoot map) with global.codeintel.dataRoot of .top over it, checked, with `root` added. */}}
{{- define "codeintel.lib.resolveDataRoot" -}}
{{- $top := .top -}}
{{- $d := deepCopy .base -}}
{{- $g := include "codeintel.lib.global" $top | fromJson -}}
{{- include "codeintel.lib.mergeInto" (dict "dst" $d "src" (omit ($g.dataRoot | default dict) "readOnly")) -}}
{{- if not (has $d.type (list "pvc" "s3")) -}}
{{- fail (printf "codeintel: dataRoot.type is %q; pvc or s3" (toString $d.type)) -}}
{{- end -}}
{{- if eq $d.type "s3" -}}
{{- if not (regexMatch "^s3://[^/]+" (toString $d.s3.url)) -}}
{{- fail (printf "codeintel: dataRoot.s3.url must be s3://bucket[/prefix], got %q" (toString $d.s3.url)) -}}
{{- end -}}
{{- $_ := set $d "root" $d.s3.url -}}
{{- else -}}
{{- $_ := set $d.pvc "claimName" (required "codeintel: dataRoot.pvc.claimName is empty" (tpl (toString $d.pvc.claimName) $top)) -}}
{{- $_ := set $d "root" $d.mountPath -}}
{{- end -}}
{{- toJson $d -}}
{{- end -}}

{{/*
The service's whole configuration as JSON, later layers winning:
  global.codeintel.config (the umbrella's, shared by every service and the indexer)
  config (this chart's)
  what the chart sets itself: <section>.addr / .metrics_addr on 0.0.0.0 and the pod's ports,
  data.root from dataRoot, and the chart's own "<binary>.config" template (GPU device,
  answer-svc's backend URLs, ...).
*/}}
{{- define "codeintel.lib.config" -}}
{{- $section := include "codeintel.lib.section" . -}}
{{- $binary := include "codeintel.lib.binary" . -}}
{{- $g := include "codeintel.lib.global" . | fromJson -}}
{{- $cfg := dict -}}
{{- include "codeintel.lib.mergeInto" (dict "dst" $cfg "src" ($g.config | default dict)) -}}
{{- include "codeintel.lib.mergeInto" (dict "dst" $cfg "src" (.Values.config | default dict)) -}}
{{- $own := dict $section (dict "addr" (printf "0.0.0.0:%d" (int .Values.ports.grpc)) "metrics_addr" (printf "0.0.0.0:%d" (int .Values.ports.metrics))) -}}
{{- $d := include "codeintel.lib.dataRoot" . -}}
{{- if $d -}}
{{- $dr := $d | fromJson -}}
{{- if eq $dr.type "s3" -}}
{{- $_ := set $own "data" (dict "root" $dr.root "mirror" $dr.s3.cacheMountPath) -}}
{{- else -}}
{{- $_ := set $own "data" (dict "root" $dr.root) -}}
{{- end -}}
{{- end -}}
{{- include "codeintel.lib.mergeInto" (dict "dst" $cfg "src" $own) -}}
{{- include "codeintel.lib.mergeInto" (dict "dst" $cfg "src" (include (printf "%s.config" $binary) . | fromYaml)) -}}
{{- toJson $cfg -}}
{{- end -}}

{{- define "codeintel.lib.configToml" -}}
# Rendered by the {{ .Chart.Name }} chart from its values (config:, global.codeintel.config and
# what the chart sets itself). Every key is documented in docs/configuration.md.
{{ include "codeintel.lib.toml" (include "codeintel.lib.config" . | fromJson) }}
{{- end -}}

{{- define "codeintel.lib.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "codeintel.lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "codeintel.lib.labels" . | nindent 4 }}
data:
  config.toml: |
    {{- include "codeintel.lib.configToml" . | nindent 4 }}
{{- end -}}
