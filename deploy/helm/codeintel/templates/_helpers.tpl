{{/* The umbrella's own resources: data root claim, indexer, Redis. Shared templates come from codeintel-lib. */}}

{{- define "codeintel.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- include "codeintel.lib.fullnameOf" (dict "release" .Release.Name "chart" .Chart.Name) -}}
{{- end -}}
{{- end -}}

{{/* The indexer's image tag: global.codeintel.image.tag, else the chart's appVersion. */}}
{{- define "codeintel.imageTag" -}}
{{- $g := include "codeintel.lib.global" . | fromJson -}}
{{- ($g.image | default dict).tag | default .Chart.AppVersion | toString -}}
{{- end -}}

{{- define "codeintel.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .top.Release.Name }}
{{- end -}}

{{/* Labels of a resource of the umbrella: (dict "top" $ "component" "indexer") */}}
{{- define "codeintel.labels" -}}
helm.sh/chart: {{ include "codeintel.lib.chartLabel" .top }}
{{ include "codeintel.selectorLabels" . }}
app.kubernetes.io/version: {{ include "codeintel.imageTag" .top | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .top.Release.Service }}
app.kubernetes.io/part-of: codeintel
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The data root as the indexer sees it (read-write), resolved like the services' (JSON). */}}
{{- define "codeintel.dataRoot" -}}
{{- include "codeintel.lib.resolveDataRoot" (dict "top" . "base" (dict "readOnly" false)) -}}
{{- end -}}

{{- define "codeintel.redisName" -}}
{{- printf "%s-redis" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The indexer's configuration: global.codeintel.config, indexer.config, then data.root. */}}
{{- define "codeintel.indexerConfig" -}}
{{- $g := include "codeintel.lib.global" . | fromJson -}}
{{- $cfg := dict -}}
{{- include "codeintel.lib.mergeInto" (dict "dst" $cfg "src" ($g.config | default dict)) -}}
{{- include "codeintel.lib.mergeInto" (dict "dst" $cfg "src" (.Values.indexer.config | default dict)) -}}
{{- $dr := include "codeintel.dataRoot" . | fromJson -}}
{{- $data := dict "root" $dr.root -}}
{{- if eq $dr.type "s3" -}}{{- $_ := set $data "mirror" $dr.s3.cacheMountPath -}}{{- end -}}
{{- include "codeintel.lib.mergeInto" (dict "dst" $cfg "src" (dict "data" $data)) -}}
{{- toJson $cfg -}}
{{- end -}}

{{- define "codeintel.indexerConfigToml" -}}
# Rendered by the codeintel chart for `codeintel index` from global.codeintel.config,
# indexer.config and the data root. Every key is documented in docs/configuration.md.
{{ include "codeintel.lib.toml" (include "codeintel.indexerConfig" . | fromJson) }}
{{- end -}}

{{/*
Name stem of one repo's indexer resources: <fullname>-idx-<repo>-<hash> (at most 52 characters,
what a CronJob name may have). The hash keeps two long names with one prefix apart.
*/}}
{{- define "codeintel.indexerName" -}}
{{- $slug := .repo.name | lower | replace "_" "-" | replace "." "-" | trunc 16 | trimSuffix "-" -}}
{{- printf "%s-idx-%s-%s" (include "codeintel.fullname" .top | trunc 24 | trimSuffix "-") $slug (sha256sum .repo.name | trunc 6) -}}
{{- end -}}

{{/*
The pod template of one repo's index run: (dict "top" $ "repo" $repo). A git repo is cloned by
an init container into an emptyDir; other repos are read from indexer.sourceVolume.
*/}}
{{- define "codeintel.indexerPod" -}}
{{- $top := .top -}}
{{- $repo := .repo -}}
{{- $ix := $top.Values.indexer -}}
{{- $g := include "codeintel.lib.global" $top | fromJson -}}
{{- $data := include "codeintel.dataRoot" $top | fromJson -}}
{{- if not (regexMatch "^[A-Za-z0-9._-]+$" (toString $repo.name)) -}}
{{- fail (printf "codeintel: indexer.repos: name %q must be letters, digits, '.', '_' or '-'" (toString $repo.name)) -}}
{{- end -}}
{{- if and (not $repo.git) (not $ix.sourceVolume) -}}
{{- fail (printf "codeintel: indexer.repos %s has no git url and indexer.sourceVolume is empty" $repo.name) -}}
{{- end -}}
{{- if contains ".." (toString ($repo.path | default "")) -}}
{{- fail (printf "codeintel: indexer.repos %s: path %q leaves the source volume" $repo.name $repo.path) -}}
{{- end -}}
{{- $image := printf "%s:%s" (($g.image | default dict).repository | default "codeintel") (include "codeintel.imageTag" $top) -}}
metadata:
  labels:
    {{- include "codeintel.labels" (dict "top" $top "component" "indexer") | nindent 4 }}
    codeintel/indexer: {{ include "codeintel.indexerName" . | quote }}
    {{- with $ix.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "codeintel.indexerConfigToml" $top | sha256sum }}
    {{- with $ix.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  {{- with ($g.imagePullSecrets | default list) }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "codeintel.lib.podSecurityContext" $top | nindent 4 }}
  {{- if $repo.git }}
  initContainers:
    - name: clone
      image: {{ printf "%s:%s" $ix.git.image.repository (toString $ix.git.image.tag) | quote }}
      imagePullPolicy: {{ $ix.git.image.pullPolicy }}
      command: ["git"]
      args:
        - clone
        - --single-branch
        {{- if gt (int $ix.git.depth) 0 }}
        - --depth={{ $ix.git.depth }}
        {{- end }}
        {{- with $repo.git.ref }}
        - --branch={{ . }}
        {{- end }}
        - --
        - {{ required (printf "codeintel: indexer.repos %s: git.url is empty" $repo.name) $repo.git.url | quote }}
        - /repos/{{ $repo.name }}
      env:
        - name: HOME
          value: /tmp
        - name: GIT_TERMINAL_PROMPT
          value: "0"
        {{- with $ix.git.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      securityContext:
        {{- include "codeintel.lib.containerSecurityContext" $top | nindent 8 }}
      resources:
        requests:
          cpu: 100m
          memory: 128Mi
        limits:
          memory: 1Gi
      volumeMounts:
        - name: repos
          mountPath: /repos
        - name: tmp
          mountPath: /tmp
  {{- end }}
  containers:
    - name: index
      image: {{ $image | quote }}
      imagePullPolicy: {{ ($g.image | default dict).pullPolicy | default "IfNotPresent" }}
      command: ["codeintel", "index", "/repos/{{ $repo.path | default $repo.name }}", "--repo", {{ $repo.name | quote }}, "--config", "/etc/codeintel/config.toml"]
      {{- with $ix.extraArgs }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        - name: RUST_LOG
          value: {{ $ix.logLevel | quote }}
        {{- with (include "codeintel.lib.dataRootEnv" $data | trim) }}{{ . | nindent 8 }}{{ end }}
        {{- with $ix.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $ix.resources }}
      resources:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "codeintel.lib.containerSecurityContext" $top | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/codeintel
          readOnly: true
        - name: tmp
          mountPath: /tmp
        - name: repos
          mountPath: /repos
          readOnly: true
        {{- with (include "codeintel.lib.dataRootMounts" $data | trim) }}{{ . | nindent 8 }}{{ end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "codeintel.fullname" $top }}-indexer
    - name: tmp
      emptyDir:
        {{- with $ix.tmpSizeLimit }}
        sizeLimit: {{ . }}
        {{- end }}
    - name: repos
      {{- if $repo.git }}
      emptyDir:
        {{- with $ix.checkoutSizeLimit }}
        sizeLimit: {{ . }}
        {{- end }}
      {{- else }}
      {{- toYaml $ix.sourceVolume | nindent 6 }}
      {{- end }}
    {{- with (include "codeintel.lib.dataRootVolumes" $data | trim) }}{{ . | nindent 4 }}{{ end }}
  {{- with $ix.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $ix.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $ix.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
