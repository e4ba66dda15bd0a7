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
