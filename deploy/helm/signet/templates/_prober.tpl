{{/* The prober's environment: where each enabled service is and how to authenticate. */}}
{{- define "signet.proberEnv" -}}
{{- $root := . -}}
{{- $catalog := include "signet.catalog" . | fromYaml -}}
SIGNET_PROBER_METRICS_HOST: "0.0.0.0"
SIGNET_PROBER_METRICS_PORT: {{ .Values.prober.metricsPort | quote }}
SIGNET_PROBER_INTERVAL_SECONDS: {{ .Values.prober.intervalSeconds | quote }}
SIGNET_PROBER_TIMEOUT_SECONDS: {{ .Values.prober.timeoutSeconds | quote }}
SIGNET_PROBER_CSV_DIR: /var/lib/signet-prober
SIGNET_PROBER_AUTH_MODE: {{ .Values.auth.mode | quote }}
{{- if eq .Values.auth.mode "mtls" }}
SIGNET_PROBER_TLS_CERT_FILE: "/etc/signet/tls/tls.crt"
SIGNET_PROBER_TLS_KEY_FILE: "/etc/signet/tls/tls.key"
SIGNET_PROBER_TLS_CLIENT_CA_FILE: "/etc/signet/tls/ca.crt"
{{- end }}
SIGNET_PROBER_LOG_LEVEL: {{ .Values.logLevel | quote }}
{{- range $key := keys $catalog | sortAlpha }}
{{- $info := index $catalog $key }}
{{- $v := index $root.Values.services $key }}
{{- if $v.enabled }}
{{ $info.prefix | replace "SIGNET_" "SIGNET_PROBER_" }}TARGETS: {{ printf "%s:%d" (include "signet.componentName" (dict "root" $root "name" $info.name)) (int $v.grpcPort) | quote }}
{{- end }}
{{- end }}
{{- if .Values.services.caGateway.enabled }}
SIGNET_PROBER_CA_GATEWAY_HTTP_URL: {{ printf "http://%s:%d" (include "signet.componentName" (dict "root" $root "name" "ca-gateway")) (int .Values.services.caGateway.httpPort) | quote }}
{{- end }}
{{- end -}}

{{- define "signet.proberSecretEnv" -}}
{{- if ne .Values.auth.mode "none" }}
- name: SIGNET_PROBER_SERVICE_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ include "signet.secretName" . }}, key: prober-service-token}
{{- end }}
{{- end -}}
