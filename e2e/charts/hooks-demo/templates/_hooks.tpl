{{/* A hook Job's pod template: one container that runs to completion. */}}
{{- define "hooks.jobSpec" -}}
backoffLimit: 0
template:
  metadata:
    labels:
      hooks-demo/hook: {{ .hook }}
  spec:
    restartPolicy: Never
    containers:
      - name: {{ .hook }}
        image: {{ .image | default (printf "registry.local/hooks-demo-%s:%s" .hook .root.Chart.AppVersion) }}
        env:
          - name: REVISION
            value: {{ .root.Release.Revision | quote }}
{{- end }}
