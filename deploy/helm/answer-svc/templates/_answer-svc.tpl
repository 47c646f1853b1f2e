{{/* What answer-svc adds to the shared templates of codeintel-lib. */}}

{{/*
Endpoints of one backend as answer-svc's comma-separated URL list: backends.<name>.urls (each
through tpl), else the headless Service of the <name>-svc chart in the same release.
*/}}
{{- define "answer-svc.backendUrl" -}}
{{- $top := .top -}}
{{- $b := index $top.Values.backends .name -}}
{{- $urls := list -}}
{{- range $b.urls -}}
{{- $urls = append $urls (tpl (toString .) $top) -}}
{{- end -}}
{{- if not $urls -}}
{{- $svc := include "codeintel.lib.fullnameOf" (dict "release" $top.Release.Name "chart" (printf "%s-svc" .name)) -}}
{{- $urls = list (printf "http://%s:%d" (include "codeintel.lib.headlessOf" $svc) (int $b.port)) -}}
{{- end -}}
{{- range $urls -}}
{{- if not (regexMatch "^http://[A-Za-z0-9.-]+:[0-9]+$" .) -}}
{{- fail (printf "codeintel: backends.%s.urls: %q is not http://host:port" $.name .) -}}
{{- end -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{/* Config keys the chart sets itself from its values. */}}
{{- define "answer-svc.config" -}}
{{- $a := dict -}}
{{- range $name := list "vector" "lexical" "hydrate" -}}
{{- $_ := set $a (printf "%s_url" $name) (include "answer-svc.backendUrl" (dict "top" $ "name" $name)) -}}
{{- end -}}
{{- if not .Values.redis.existingSecret -}}{{/* else CODEINTEL__ANSWER__REDIS_URL from the Secret */}}
{{- with tpl (toString .Values.redis.url) . -}}
{{- $_ := set $a "redis_url" . -}}
{{- end -}}
{{- end -}}
{{- with tpl (toString .Values.llm.url) . -}}
{{- $_ := set $a "llm_url" . -}}
{{- end -}}
{{- with .Values.llm.model -}}
{{- $_ := set $a "llm_model" . -}}
{{- end -}}
{{- with tpl (toString .Values.rerank.url) . -}}
{{- $_ := set $a "rerank_url" . -}}
{{- end -}}
{{- with .Values.rerank.model -}}
{{- $_ := set $a "rerank_model" . -}}
{{- end -}}
{{- $_ := set $a "traces" (.Values.traces.enabled | default false) -}}
{{- if .Values.traces.enabled -}}
{{- $_ := set $a "trace_dir" .Values.traces.mountPath -}}
{{- end -}}
{{- toYaml (dict "answer" $a) -}}
{{- end -}}

{{- define "answer-svc.env" -}}
{{- if and .Values.traces.enabled .Values.traces.perPodSubdir }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: CODEINTEL__ANSWER__REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.secretKey }}
{{- end }}
{{- end -}}

{{- define "answer-svc.volumes" -}}
{{- if .Values.traces.enabled }}
- name: traces
  {{- if .Values.traces.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ tpl .Values.traces.existingClaim . }}
  {{- else }}
  emptyDir:
    {{- with .Values.traces.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "answer-svc.volumeMounts" -}}
{{- if .Values.traces.enabled }}
- name: traces
  mountPath: {{ .Values.traces.mountPath }}
  {{- if .Values.traces.perPodSubdir }}
  subPathExpr: $(POD_NAME)
  {{- end }}
{{- end }}
{{- end -}}
