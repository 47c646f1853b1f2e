{{/*
Security settings shared by every CodeIntel pod and container (the image runs as uid 10001).
*/}}
{{- define "codeintel.lib.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "codeintel.lib.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Volumes, mounts and env of a resolved data root (the map of codeintel.lib.resolveDataRoot; empty
map = none), as YAML lists. pvc: the claim; s3: an emptyDir cache and the credentials.
*/}}
{{- define "codeintel.lib.dataRootVolumes" -}}
{{- $d := . -}}
{{- if $d -}}
{{- if eq $d.type "pvc" }}
- name: data
  persistentVolumeClaim:
    claimName: {{ $d.pvc.claimName }}
    readOnly: {{ $d.readOnly }}
{{- else }}
- name: data-cache
  emptyDir:
    {{- with $d.s3.cacheSizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{- define "codeintel.lib.dataRootMounts" -}}
{{- $d := . -}}
{{- if $d -}}
{{- if eq $d.type "pvc" }}
- name: data
  mountPath: {{ $d.mountPath }}
  readOnly: {{ $d.readOnly }}
{{- else }}
- name: data-cache
  mountPath: {{ $d.s3.cacheMountPath }}
{{- end }}
{{- end -}}
{{- end -}}

{{- define "codeintel.lib.dataRootEnv" -}}
{{- $d := . -}}
{{- if $d -}}
{{- if and (eq $d.type "s3") $d.s3.existingSecret }}
{{- range $var := list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" "AWS_SESSION_TOKEN" "AWS_REGION" "AWS_ENDPOINT_URL" }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $d.s3.existingSecret }}
      key: {{ $var }}
      optional: {{ not (has $var (list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY")) }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* A gRPC probe on the service's port, with the timings of .Values.probes.<kind>. */}}
{{- define "codeintel.lib.grpcProbe" -}}
{{- $p := .probe -}}
grpc:
  port: {{ .port }}
  {{- with $p.service }}
  service: {{ . | quote }}
  {{- end }}
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "failureThreshold" "successThreshold" }}
{{- if hasKey $p $k }}
{{ $k }}: {{ index $p $k | int }}
{{- end }}
{{- end }}
{{- end -}}
