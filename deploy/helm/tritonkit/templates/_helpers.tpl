{{/* Names, labels and the checks that stop a render with a message instead of producing a broken release. */}}

{{- define "tritonkit.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tritonkit.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tritonkit.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: triton
{{- end -}}

{{- define "tritonkit.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository .Values.image.tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}
{{- end -}}

{{- define "tritonkit.apiKeySecret" -}}
{{- if .Values.apiKey.existingSecret -}}
{{- .Values.apiKey.existingSecret -}}
{{- else if .Values.apiKey.value -}}
{{- printf "%s-api-key" (include "tritonkit.fullname" .) -}}
{{- else -}}
{{- fail "set apiKey.value (e.g. --set apiKey.value=$(openssl rand -hex 32)) or apiKey.existingSecret: Triton's admin APIs need a key" -}}
{{- end -}}
{{- end -}}

{{- define "tritonkit.apiKeySecretKey" -}}
{{- if .Values.apiKey.existingSecret -}}{{ .Values.apiKey.existingSecretKey }}{{- else -}}api-key{{- end -}}
{{- end -}}

{{/* The --model-repository value: the PVC mount or the object-storage url, checked against the source. */}}
{{- define "tritonkit.modelRepository" -}}
{{- $repo := .Values.modelRepository -}}
{{- $prefixes := dict "s3" "s3://" "gcs" "gs://" "azure" "as://" -}}
{{- if eq $repo.source "pvc" -}}
{{- if not $repo.pvc.claimName -}}
{{- fail "modelRepository.source is pvc: set modelRepository.pvc.claimName to the claim holding the model repository" -}}
{{- end -}}
/models
{{- else if hasKey $prefixes $repo.source -}}
{{- $prefix := get $prefixes $repo.source -}}
{{- if not (hasPrefix $prefix $repo.url) -}}
{{- fail (printf "modelRepository.source is %s: modelRepository.url must start with %s (got %q)" $repo.source $prefix $repo.url) -}}
{{- end -}}
{{- $repo.url -}}
{{- else -}}
{{- fail (printf "modelRepository.source must be pvc, s3, gcs or azure (got %q)" $repo.source) -}}
{{- end -}}
{{- end -}}

{{- define "tritonkit.gcsCredentials" -}}
/var/run/secrets/tritonkit/gcs
{{- end -}}
