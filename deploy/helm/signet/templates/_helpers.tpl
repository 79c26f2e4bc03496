{{/*
Names, labels and the per-service building blocks. Every service's templates/<svc>/*.yaml
call the shared "signet.*" templates below with (dict "root" $ "key" "<valuesKey>"), so the
five services are rendered by one definition each and cannot drift apart.
*/}}

{{- define "signet.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The static facts of each service: its name, settings prefix and whom it calls.
Every service calls identity to check tenants' API credentials (AuthenticateApiCredential). */}}
{{- define "signet.catalog" -}}
identity:
  name: identity
  prefix: SIGNET_IDENTITY_
  calls: [signer, notify]
caGateway:
  name: ca-gateway
  prefix: SIGNET_CA_GATEWAY_
  calls: [signer, identity]
signer:
  name: signer
  prefix: SIGNET_SIGNER_
  calls: [identity]
evidence:
  name: evidence
  prefix: SIGNET_EVIDENCE_
  calls: [signer, caGateway, identity]
notify:
  name: notify
  prefix: SIGNET_NOTIFY_
  calls: [identity, evidence]
{{- end -}}

{{- define "signet.info" -}}
{{- $catalog := include "signet.catalog" . | fromYaml -}}
{{- toYaml (index $catalog .key) -}}
{{- end -}}

{{/* One service's values merged over serviceDefaults. */}}
{{- define "signet.values" -}}
{{- $defaults := deepCopy .root.Values.serviceDefaults -}}
{{- $own := deepCopy (index .root.Values.services .key) -}}
{{- toYaml (mustMergeOverwrite $defaults $own) -}}
{{- end -}}

{{- define "signet.componentName" -}}
{{- printf "%s-%s" (include "signet.fullname" .root) .name -}}
{{- end -}}

{{- define "signet.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: signet
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "name" "signer"). */}}
{{- define "signet.selectorLabels" -}}
app.kubernetes.io/name: signet
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "signet.labels" -}}
{{ include "signet.chartLabels" .root }}
{{ include "signet.selectorLabels" . }}
{{- end -}}

{{- define "signet.image" -}}
{{- $img := .root.Values.image -}}
{{- $tag := $img.tag | default .root.Chart.AppVersion -}}
{{- if $img.registry -}}
{{- printf "%s/%s-%s:%s" $img.registry $img.repository .name $tag -}}
{{- else -}}
{{- printf "%s-%s:%s" $img.repository .name $tag -}}
{{- end -}}
{{- end -}}

{{- define "signet.secretName" -}}
{{- required "secrets.existingSecret: name the Secret holding database URLs, tokens and the HSM PIN" .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "signet.terminationGracePeriod" -}}
{{- add (int .Values.preStopSleepSeconds) (int (ceil .Values.drainSeconds)) (int .Values.terminationSlackSeconds) -}}
{{- end -}}

{{/* dns:/// target of a service's headless Service, for client-side round robin. */}}
{{- define "signet.target" -}}
{{- $v := index .root.Values.services .key -}}
{{- $info := include "signet.info" (dict "key" .key) | fromYaml -}}
{{- printf "dns:///%s-headless.%s.svc:%d" (include "signet.componentName" (dict "root" .root "name" $info.name)) .root.Release.Namespace (int $v.grpcPort) -}}
{{- end -}}

{{/* Validation the schema cannot express (cross-field rules). */}}
{{- define "signet.validate" -}}
{{- $v := .Values -}}
{{- if and (eq $v.auth.mode "mtls") $v.serviceDefaults.probes.grpc -}}
{{- fail "auth.mode=mtls: kubelet gRPC probes cannot present a client certificate; set serviceDefaults.probes.grpc=false" -}}
{{- end -}}
{{- if and $v.kafka.sasl.enabled (not $v.kafka.bootstrap) -}}
{{- fail "kafka.sasl.enabled needs kafka.bootstrap" -}}
{{- end -}}
{{- if and $v.services.caGateway.ingress.enabled (not $v.services.caGateway.ingress.host) -}}
{{- fail "services.caGateway.ingress.enabled needs services.caGateway.ingress.host" -}}
{{- end -}}
{{- end -}}

{{/* The environment every service shares: (dict "root" $ "key" "signer"). */}}
{{- define "signet.commonEnv" -}}
{{- $root := .root -}}
{{- $info := include "signet.info" (dict "key" .key) | fromYaml -}}
{{- $v := include "signet.values" . | fromYaml -}}
{{- $p := $info.prefix -}}
{{ $p }}GRPC_HOST: "0.0.0.0"
{{ $p }}GRPC_PORT: {{ $v.grpcPort | quote }}
{{ $p }}METRICS_PORT: {{ $v.metricsPort | quote }}
{{ $p }}DRAIN_SECONDS: {{ $root.Values.drainSeconds | quote }}
{{ $p }}KAFKA_BOOTSTRAP: {{ $root.Values.kafka.bootstrap | quote }}
{{ $p }}KAFKA_CLIENT_ID: {{ printf "signet-%s" $info.name | quote }}
{{- if or $root.Values.kafka.tls.enabled $root.Values.kafka.sasl.enabled }}
{{ $p }}KAFKA_SECURITY_PROTOCOL: {{ printf "%s%s" (ternary "SASL_" "" $root.Values.kafka.sasl.enabled) (ternary "SSL" "PLAINTEXT" $root.Values.kafka.tls.enabled) | quote }}
{{- end }}
{{- if $root.Values.kafka.sasl.enabled }}
{{ $p }}KAFKA_SASL_MECHANISM: {{ $root.Values.kafka.sasl.mechanism | quote }}
{{- end }}
{{- if and $root.Values.kafka.tls.enabled $root.Values.kafka.tls.caSecret }}
{{ $p }}KAFKA_SSL_CAFILE: "/etc/signet/kafka-ca/ca.crt"
{{- end }}
{{ $p }}AUTH_MODE: {{ $root.Values.auth.mode | quote }}
{{- if eq $root.Values.auth.mode "mtls" }}
{{ $p }}TLS_CERT_FILE: "/etc/signet/tls/tls.crt"
{{ $p }}TLS_KEY_FILE: "/etc/signet/tls/tls.key"
{{ $p }}TLS_CLIENT_CA_FILE: "/etc/signet/tls/ca.crt"
{{- end }}
{{ $p }}TRACING_EXPORTER: {{ $root.Values.tracing.exporter | quote }}
{{ $p }}OTLP_ENDPOINT: {{ $root.Values.tracing.otlpEndpoint | quote }}
{{ $p }}LOG_LEVEL: {{ $root.Values.logLevel | quote }}
{{- range $callee := $info.calls }}
{{- $calleeInfo := include "signet.info" (dict "key" $callee) | fromYaml }}
{{ $p }}{{ $calleeInfo.prefix | trimPrefix "SIGNET_" | trimSuffix "_" }}_TARGETS: {{ include "signet.target" (dict "root" $root "key" $callee) | quote }}
{{- end }}
{{- range $field, $value := $v.settings }}
{{ $p }}{{ $field | upper }}: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* Secret-backed environment of one service. */}}
{{- define "signet.secretEnv" -}}
{{- $root := .root -}}
{{- $info := include "signet.info" (dict "key" .key) | fromYaml -}}
{{- $p := $info.prefix -}}
{{- $secret := include "signet.secretName" $root -}}
- name: {{ $p }}DATABASE_URL
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ printf "%s-database-url" $info.name }}}
{{- if ne $root.Values.auth.mode "none" }}
- name: {{ $p }}SERVICE_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ printf "%s-service-token" $info.name }}}
{{- end }}
{{- if eq $root.Values.auth.mode "token" }}
- name: {{ $p }}API_TOKEN_HASHES
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ printf "%s-api-token-hashes" $info.name }}}
{{- end }}
{{- if $root.Values.kafka.sasl.enabled }}
- name: {{ $p }}KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: kafka-sasl-username}
- name: {{ $p }}KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: kafka-sasl-password}
{{- end }}
{{- end -}}

{{/* Pod scheduling: anti-affinity and topology spread over the component's pods. */}}
{{- define "signet.scheduling" -}}
{{- $v := .values -}}
{{- $selector := include "signet.selectorLabels" (dict "root" .root "name" .name) | fromYaml -}}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
affinity:
  {{- with $v.affinity.nodeAffinity }}
  nodeAffinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  podAntiAffinity:
    {{- if eq $v.podAntiAffinity "hard" }}
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- toYaml $selector | nindent 12 }}
    {{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- toYaml $selector | nindent 14 }}
    {{- end }}
{{- if $v.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ $v.topologySpread.maxSkew }}
    topologyKey: {{ $v.topologySpread.topologyKey }}
    whenUnsatisfiable: {{ $v.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- toYaml $selector | nindent 8 }}
{{- end }}
{{- end -}}
