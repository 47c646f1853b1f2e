{{/*
The Deployment of a service: one container running the chart's binary with --config on the
rendered ConfigMap, bound on 0.0.0.0, gRPC probes, a read-only root filesystem with an emptyDir
for /tmp, the data root, and the chart's own additions through the named templates
"<binary>.env", "<binary>.volumes" and "<binary>.volumeMounts" (YAML lists, possibly empty).
*/}}
{{- define "codeintel.lib.deployment" -}}
{{- $binary := include "codeintel.lib.binary" . -}}
{{- $fullname := include "codeintel.lib.fullname" . -}}
{{- $g := include "codeintel.lib.global" . | fromJson -}}
{{- $data := include "codeintel.lib.dataRoot" . | default "{}" | fromJson -}}
{{- $gpu := (.Values.gpu | default dict) -}}
{{- $resources := deepCopy (.Values.resources | default dict) -}}
{{- $nodeSelector := deepCopy (.Values.nodeSelector | default dict) -}}
{{- $tolerations := .Values.tolerations | default list -}}
{{- if $gpu.enabled -}}
{{- $limits := $resources.limits | default dict -}}
{{- $_ := set $limits $gpu.resourceName (int $gpu.count) -}}
{{- $_ := set $resources "limits" $limits -}}
{{- $nodeSelector = merge $nodeSelector ($gpu.nodeSelector | default dict) -}}
{{- $tolerations = concat $tolerations ($gpu.tolerations | default list) -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "codeintel.lib.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "codeintel.lib.selectorLabels" . | nindent 6 }}
  strategy:
    {{- toYaml (.Values.updateStrategy | default (dict "type" "RollingUpdate" "rollingUpdate" (dict "maxUnavailable" 0 "maxSurge" 1))) | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "codeintel.lib.labels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "codeintel.lib.configToml" . | sha256sum }}
        {{- if .Values.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .Values.ports.metrics | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "codeintel.lib.serviceAccountName" . }}
      automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
      {{- with ($g.imagePullSecrets | default .Values.imagePullSecrets) }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      securityContext:
        {{- include "codeintel.lib.podSecurityContext" . | nindent 8 }}
      terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
      containers:
        - name: {{ $binary }}
          image: {{ include "codeintel.lib.image" . | quote }}
          imagePullPolicy: {{ include "codeintel.lib.imagePullPolicy" . }}
          command: [{{ $binary | quote }}, "--config", "/etc/codeintel/config.toml"]
          {{- with .Values.extraArgs }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: grpc
              containerPort: {{ .Values.ports.grpc }}
              protocol: TCP
            - name: metrics
              containerPort: {{ .Values.ports.metrics }}
              protocol: TCP
          env:
            - name: RUST_LOG
              value: {{ .Values.logLevel | quote }}
            {{- with (include "codeintel.lib.dataRootEnv" $data | trim) }}{{ . | nindent 12 }}{{ end }}
            {{- with (include (printf "%s.env" $binary) . | trim) }}{{ . | nindent 12 }}{{ end }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with .Values.envFrom }}
          envFrom:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          startupProbe:
            {{- include "codeintel.lib.grpcProbe" (dict "port" .Values.ports.grpc "probe" .Values.probes.startup) | nindent 12 }}
          readinessProbe:
            {{- include "codeintel.lib.grpcProbe" (dict "port" .Values.ports.grpc "probe" .Values.probes.readiness) | nindent 12 }}
          livenessProbe:
            {{- include "codeintel.lib.grpcProbe" (dict "port" .Values.ports.grpc "probe" .Values.probes.liveness) | nindent 12 }}
          {{- if .Values.preStopSleepSeconds }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ .Values.preStopSleepSeconds }}
          {{- end }}
          {{- with $resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          securityContext:
            {{- include "codeintel.lib.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: config
              mountPath: /etc/codeintel
              readOnly: true
            - name: tmp
              mountPath: /tmp
            {{- with (include "codeintel.lib.dataRootMounts" $data | trim) }}{{ . | nindent 12 }}{{ end }}
            {{- with (include (printf "%s.volumeMounts" $binary) . | trim) }}{{ . | nindent 12 }}{{ end }}
            {{- with .Values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ $fullname }}
        - name: tmp
          emptyDir:
            {{- with .Values.tmpSizeLimit }}
            sizeLimit: {{ . }}
            {{- end }}
        {{- with (include "codeintel.lib.dataRootVolumes" $data | trim) }}{{ . | nindent 8 }}{{ end }}
        {{- with (include (printf "%s.volumes" $binary) . | trim) }}{{ . | nindent 8 }}{{ end }}
        {{- with .Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- tpl (toYaml .) $ | nindent 8 }}
      {{- end }}
{{- end -}}
