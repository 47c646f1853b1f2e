{{/*
TOML from a nested map, for the ConfigMap every service reads with `--config`.

  {{ include "codeintel.lib.toml" $map }}

Maps become tables (`[section]`, `[section.sub]`), everything else `key = value`:
- strings are TOML basic strings: Go's JSON encoding of a string is one (`\"`, `\\`, `\n`,
  `\uXXXX` are the same escapes in both);
- booleans are `true` / `false`;
- numbers: Helm hands every number over as a float64 (values pass through JSON), so an
  integral one is written as an integer (`1048576`, never `1.048576e+06`) and the rest as a
  float (`0.05`). The services' float keys accept an integer; their integer keys refuse a float;
- lists are inline arrays of the above (`["a", "b"]`, `[]`);
- a null is left out (TOML has no null), so `key: null` drops a key.
Keys that are not bare (`A-Za-z0-9_-`) are quoted. A list of maps fails the render.
*/}}
{{- define "codeintel.lib.toml" -}}
{{- include "codeintel.lib.toml.table" (dict "path" (list) "map" .) | trim -}}
{{- end -}}

{{/* One table: its header and scalar keys, then its sub-tables; each header after a blank line. */}}
{{- define "codeintel.lib.toml.table" -}}
{{- $path := .path -}}
{{- $scalars := dict -}}
{{- $tables := dict -}}
{{- range $k, $v := .map -}}
{{- if kindIs "map" $v -}}
{{- $_ := set $tables $k $v -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $_ := set $scalars $k $v -}}
{{- end -}}
{{- end -}}
{{- if and $path (or $scalars (not $tables)) -}}
{{- printf "\n[%s]\n" (include "codeintel.lib.toml.keypath" $path) -}}
{{- end -}}
{{- range $k, $v := $scalars -}}
{{- printf "%s = %s\n" (include "codeintel.lib.toml.key" $k) (include "codeintel.lib.toml.value" $v) -}}
{{- end -}}
{{- range $k, $v := $tables -}}
{{- include "codeintel.lib.toml.table" (dict "path" (append $path $k) "map" $v) -}}
{{- end -}}
{{- end -}}

{{- define "codeintel.lib.toml.keypath" -}}
{{- $parts := list -}}
{{- range . -}}
{{- $parts = append $parts (include "codeintel.lib.toml.key" .) -}}
{{- end -}}
{{- join "." $parts -}}
{{- end -}}

{{- define "codeintel.lib.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}
{{- . -}}
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{- define "codeintel.lib.toml.value" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if kindIs "float64" . -}}
{{- if and (eq (floor .) .) (lt . 9007199254740992.0) (gt . -9007199254740992.0) -}}
{{- printf "%d" (int64 .) -}}
{{- else -}}
{{- printf "%v" . -}}
{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "int32" .) (kindIs "uint64" .) -}}
{{- printf "%d" . -}}
{{- else if kindIs "slice" . -}}
{{- $items := list -}}
{{- range . -}}
{{- if or (kindIs "map" .) (kindIs "slice" .) (kindIs "invalid" .) -}}
{{- fail (printf "codeintel: config lists hold strings, numbers or booleans only, got %s" (toJson .)) -}}
{{- end -}}
{{- $items = append $items (include "codeintel.lib.toml.value" .) -}}
{{- end -}}
[{{ join ", " $items }}]
{{- else -}}
{{- fail (printf "codeintel: cannot write a %s as a TOML value: %s" (kindOf .) (toJson .)) -}}
{{- end -}}
{{- end -}}

{{/*
Deep merge of .src into .dst, in place: maps are merged key by key, anything else in .src
(false, 0 and "" included, which sprig's mergeOverwrite would skip) replaces what .dst has.
*/}}
{{- define "codeintel.lib.mergeInto" -}}
{{- $dst := .dst -}}
{{- range $k, $v := .src -}}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) -}}
{{- include "codeintel.lib.mergeInto" (dict "dst" (get $dst $k) "src" $v) -}}
{{- else if kindIs "map" $v -}}
{{- $_ := set $dst $k (deepCopy $v) -}}
{{- else if kindIs "invalid" $v -}}
{{- $_ := unset $dst $k -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}
