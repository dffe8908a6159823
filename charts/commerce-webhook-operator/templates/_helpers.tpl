{{- define "cwo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cwo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cwo.labels" -}}
{{ include "cwo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cwo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cwo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Namespaced Role/RoleBinding when watching one namespace, cluster-wide otherwise. */}}
{{- define "cwo.roleKind" -}}
{{- if .Values.watchNamespace -}}Role{{- else -}}ClusterRole{{- end -}}
{{- end -}}

{{/* Leader election: on when asked for, and always with more than one replica. */}}
{{- define "cwo.leaderElect" -}}
{{- or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: the repository is required (no
default may name a registry namespace this project does not own), a digest pins the
exact image, else the tag (default: the chart's appVersion). Called with
(list <values> "<values path>" $).
*/}}
{{- define "cwo.image" -}}
{{- $image := index . 0 -}}
{{- $path := index . 1 -}}
{{- $root := index . 2 -}}
{{- $repository := required (printf "%s.repository is required: no image of this project is published; build it from the Dockerfile, push it to a registry you control and set %s.repository (and %s.digest to pin it)" $path $path $path) $image.repository -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository ($image.tag | default $root.Chart.AppVersion) -}}
{{- end -}}
{{- end -}}
