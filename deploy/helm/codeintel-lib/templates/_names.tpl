{{/*
Names and labels. A service chart states what it runs in its Chart.yaml annotations, which an
umbrella alias does not change (an alias renames .Chart.Name):
  codeintel/binary:  the binary, and the container's command (vector-svc)
  codeintel/section: its section of the config file (vector), where `addr`/`metrics_addr` live
*/}}
{{- define "codeintel.lib.binary" -}}
{{- required "codeintel: the chart's Chart.yaml needs the codeintel/binary annotation" (index (.Chart.Annotations | default dict) "codeintel/binary") -}}
{{- end -}}

{{- define "codeintel.lib.section" -}}
{{- required "codeintel: the chart's Chart.yaml needs the codeintel/section annotation" (index (.Chart.Annotations | default dict) "codeintel/section") -}}
{{- end -}}

{{- define "codeintel.lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-<chart>, or the release name alone when it already contains the chart's name. */}}
{{- define "codeintel.lib.fullnameOf" -}}
{{- if contains .chart .release -}}
{{- .release | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .release .chart | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "codeintel.lib.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- include "codeintel.lib.fullnameOf" (dict "release" .Release.Name "chart" (include "codeintel.lib.name" .)) -}}
{{- end -}}
{{- end -}}

{{/* The headless Service of a fullname (what answer-svc resolves to reach every pod). */}}
{{- define "codeintel.lib.headlessOf" -}}
{{- printf "%s-headless" (. | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "codeintel.lib.chartLabel" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "codeintel.lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "codeintel.lib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "codeintel.lib.labels" -}}
helm.sh/chart: {{ include "codeintel.lib.chartLabel" . }}
{{ include "codeintel.lib.selectorLabels" . }}
app.kubernetes.io/version: {{ include "codeintel.lib.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: codeintel
app.kubernetes.io/component: {{ include "codeintel.lib.section" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "codeintel.lib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "codeintel.lib.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The umbrella's settings for every service (global.codeintel), an empty map elsewhere. */}}
{{- define "codeintel.lib.global" -}}
{{- toJson ((.Values.global | default dict).codeintel | default dict) -}}
{{- end -}}

{{/* The image tag: global.codeintel.image.tag, else image.tag, else the chart's appVersion; -gpu-less. */}}
{{- define "codeintel.lib.imageTag" -}}
{{- $g := include "codeintel.lib.global" . | fromJson -}}
{{- $gi := $g.image | default dict -}}
{{- $gi.tag | default .Values.image.tag | default .Chart.AppVersion | toString -}}
{{- end -}}

{{/* repository:tag of the container; the GPU variant's tag when gpu.enabled. */}}
{{- define "codeintel.lib.image" -}}
{{- $g := include "codeintel.lib.global" . | fromJson -}}
{{- $gi := $g.image | default dict -}}
{{- $repo := $gi.repository | default .Values.image.repository -}}
{{- $tag := include "codeintel.lib.imageTag" . -}}
{{- if (.Values.gpu | default dict).enabled -}}
{{- $tag = .Values.gpu.imageTag | default (printf "%s-gpu" $tag) -}}
{{- end -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "codeintel.lib.imagePullPolicy" -}}
{{- $g := include "codeintel.lib.global" . | fromJson -}}
{{- ($g.image | default dict).pullPolicy | default .Values.image.pullPolicy | default "IfNotPresent" -}}
{{- end -}}
