{{- define "capabilities-demo.monitored" -}}
{{- .Capabilities.APIVersions.Has (printf "%s/ServiceMonitor" .Values.monitor.apiVersion) -}}
{{- end -}}
