{{- define "cco.name" -}}continual-clip-operator{{- end -}}
{{- define "cco.fullname" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}-{{ include "cco.name" . }}{{- end -}}
{{- define "cco.labels" -}}
app.kubernetes.io/name: {{ include "cco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
{{- define "cco.selector" -}}
app.kubernetes.io/name: {{ include "cco.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- define "cco.notificationSecret" -}}{{ .Values.notifications.existingSecret | default (printf "%s-notifications" (include "cco.fullname" .)) }}{{- end -}}
{{- /* The namespaces watched in namespaced mode, as a JSON array: watchNamespaces, or the release's own. */ -}}
{{- define "cco.namespaces" -}}
{{- if .Values.watchNamespaces }}{{ toJson .Values.watchNamespaces }}{{ else }}{{ list .Release.Namespace | toJson }}{{ end -}}
{{- end -}}
