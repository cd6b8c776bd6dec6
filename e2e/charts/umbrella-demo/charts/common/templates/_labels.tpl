{{- define "common.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: umbrella-demo
environment: {{ .Values.global.environment | quote }}
{{- end -}}
