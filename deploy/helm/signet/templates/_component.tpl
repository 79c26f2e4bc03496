{{/*
The Kubernetes objects of one Signet service. Called as
  {{ include "signet.deployment" (dict "root" $ "key" "signer") }}
from templates/<service>/<kind>.yaml.
*/}}

{{- define "signet.configmap" -}}
{{- $v := index .root.Values.services .key -}}
{{- if $v.enabled -}}
{{- $info := include "signet.info" . | fromYaml -}}
{{- $ctx := dict "root" .root "name" $info.name -}}
{{- $p := $info.prefix -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "signet.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "signet.labels" $ctx | nindent 4 }}
data:
  {{- include "signet.commonEnv" . | nindent 2 }}
  {{- if eq .key "signer" }}
  {{ $p }}WORKERS: {{ $v.workers | quote }}
  {{ $p }}MAX_BATCH_SIZE: {{ $v.maxBatchSize | quote }}
  {{- if not $v.front.enabled }}
  {{ $p }}FRONT_BINARY: ""
  {{- end }}
  {{ $p }}FRONT_MAX_BATCH: {{ $v.front.maxBatch | quote }}
  {{ $p }}FRONT_BATCHES_PER_WORKER: {{ $v.front.batchesPerWorker | quote }}
  {{ $p }}TSA_URL: {{ $v.tsaUrl | quote }}
  {{ $p }}PKCS11_MODULE: {{ .root.Values.hsm.modulePath | quote }}
  {{ $p }}PKCS11_TOKEN_LABEL: {{ .root.Values.hsm.tokenLabel | quote }}
  {{ $p }}PKCS11_SLOT: {{ .root.Values.hsm.slot | int | quote }}
  {{ $p }}PKCS11_POOL_SIZE: {{ .root.Values.hsm.poolSize | quote }}
  {{- range $name, $value := .root.Values.hsm.env }}
  {{ $name }}: {{ $value | toString | quote }}
  {{- end }}
  {{- end }}
  {{- if eq .key "caGateway" }}
  {{ $p }}HTTP_HOST: "0.0.0.0"
  {{ $p }}HTTP_PORT: {{ $v.httpPort | quote }}
  {{ $p }}PUBLIC_BASE_URL: {{ include "signet.caPublicBaseUrl" .root | quote }}
  {{ $p }}ORGANIZATION: {{ $v.organization | quote }}
  {{ $p }}COUNTRY: {{ $v.country | quote }}
  {{- end }}
  {{- if eq .key "notify" }}
  {{ $p }}SMTP_HOST: {{ $v.smtpHost | quote }}
  {{ $p }}SMTP_PORT: {{ $v.smtpPort | quote }}
  {{- end }}
{{- end -}}
{{- end -}}

{{- define "signet.caPublicBaseUrl" -}}
{{- $ca := .Values.services.caGateway -}}
{{- if $ca.publicBaseUrl -}}
{{- $ca.publicBaseUrl -}}
{{- else if $ca.ingress.enabled -}}
{{- printf "%s://%s" (ternary "https" "http" (ne $ca.ingress.tlsSecret "")) $ca.ingress.host -}}
{{- else -}}
{{- printf "http://%s-ca-gateway.%s.svc:%d" (include "signet.fullname" .) .Release.Namespace (int $ca.httpPort) -}}
{{- end -}}
{{- end -}}

{{- define "signet.deployment" -}}
{{- $raw := index .root.Values.services .key -}}
{{- if $raw.enabled -}}
{{- $root := .root -}}
{{- $info := include "signet.info" . | fromYaml -}}
{{- $v := include "signet.values" . | fromYaml -}}
{{- $ctx := dict "root" $root "name" $info.name -}}
{{- $name := include "signet.componentName" $ctx -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "signet.labels" $ctx | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  selector:
    matchLabels:
      {{- include "signet.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "signet.labels" $ctx | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "signet.configmap" . | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "signet.terminationGracePeriod" $root }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- include "signet.scheduling" (dict "root" $root "name" $info.name "values" $v) | nindent 6 }}
      containers:
        - name: {{ $info.name }}
          image: {{ include "signet.image" $ctx }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          ports:
            - name: grpc
              containerPort: {{ $v.grpcPort }}
              protocol: TCP
            - name: metrics
              containerPort: {{ $v.metricsPort }}
              protocol: TCP
            {{- if eq .key "caGateway" }}
            - name: http
              containerPort: {{ $v.httpPort }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $name }}
          env:
            {{- include "signet.secretEnv" . | nindent 12 }}
            {{- if eq .key "signer" }}
            - name: SIGNET_SIGNER_PKCS11_PIN
              valueFrom:
                secretKeyRef: {name: {{ include "signet.secretName" $root }}, key: hsm-pin}
            {{- end }}
          {{- if $v.probes.grpc }}
          startupProbe:
            grpc:
              port: {{ $v.grpcPort }}
            periodSeconds: 5
            failureThreshold: 60
          readinessProbe:
            grpc:
              port: {{ $v.grpcPort }}
            initialDelaySeconds: {{ $v.probes.initialDelaySeconds }}
            periodSeconds: {{ $v.probes.periodSeconds }}
            failureThreshold: {{ $v.probes.failureThreshold }}
          livenessProbe:
            grpc:
              port: {{ $v.grpcPort }}
            periodSeconds: {{ $v.probes.periodSeconds }}
            failureThreshold: {{ add $v.probes.failureThreshold 3 }}
          {{- end }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $root.Values.preStopSleepSeconds }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if and $root.Values.kafka.tls.enabled $root.Values.kafka.tls.caSecret }}
            - name: kafka-ca
              mountPath: /etc/signet/kafka-ca
              readOnly: true
            {{- end }}
            {{- if and (eq .key "signer") $root.Values.hsm.volume }}
            - name: hsm
              mountPath: {{ $root.Values.hsm.mountPath }}
              readOnly: true
            {{- end }}
            {{- if eq $root.Values.auth.mode "mtls" }}
            - name: tls
              mountPath: /etc/signet/tls
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            medium: Memory
            sizeLimit: 64Mi
        {{- if and $root.Values.kafka.tls.enabled $root.Values.kafka.tls.caSecret }}
        - name: kafka-ca
          secret:
            secretName: {{ $root.Values.kafka.tls.caSecret }}
        {{- end }}
        {{- if and (eq .key "signer") $root.Values.hsm.volume }}
        - name: hsm
          {{- toYaml $root.Values.hsm.volume | nindent 10 }}
        {{- end }}
        {{- if eq $root.Values.auth.mode "mtls" }}
        - name: tls
          secret:
            secretName: {{ printf "%s-%s" $root.Values.auth.tlsSecretPrefix $info.name }}
        {{- end }}
{{- end -}}
{{- end -}}

{{- define "signet.service" -}}
{{- $raw := index .root.Values.services .key -}}
{{- if $raw.enabled -}}
{{- $info := include "signet.info" . | fromYaml -}}
{{- $ctx := dict "root" .root "name" $info.name -}}
{{- $name := include "signet.componentName" $ctx -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "signet.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "signet.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $raw.grpcPort }}
      targetPort: grpc
      appProtocol: grpc
    - name: metrics
      port: {{ $raw.metricsPort }}
      targetPort: metrics
    {{- if eq .key "caGateway" }}
    - name: http
      port: {{ $raw.httpPort }}
      targetPort: http
      appProtocol: http
    {{- end }}
---
# Headless: callers resolve every ready pod (dns:///) and balance calls round robin, since
# one long-lived HTTP/2 connection through a ClusterIP would pin them to a single pod.
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}-headless
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "signet.labels" $ctx | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "signet.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $raw.grpcPort }}
      targetPort: grpc
      appProtocol: grpc
{{- end -}}
{{- end -}}

{{- define "signet.serviceaccount" -}}
{{- $raw := index .root.Values.services .key -}}
{{- if and $raw.enabled .root.Values.serviceAccount.create -}}
{{- $info := include "signet.info" . | fromYaml -}}
{{- $ctx := dict "root" .root "name" $info.name -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "signet.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "signet.labels" $ctx | nindent 4 }}
  {{- with .root.Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}
{{- end -}}

{{- define "signet.pdb" -}}
{{- $raw := index .root.Values.services .key -}}
{{- $v := include "signet.values" . | fromYaml -}}
{{- if and $raw.enabled $v.podDisruptionBudget.enabled -}}
{{- $info := include "signet.info" . | fromYaml -}}
{{- $ctx := dict "root" .root "name" $info.name -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "signet.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "signet.labels" $ctx | nindent 4 }}
spec:
  minAvailable: {{ $v.podDisruptionBudget.minAvailable }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "signet.selectorLabels" $ctx | nindent 6 }}
{{- end -}}
{{- end -}}

{{- define "signet.hpa" -}}
{{- $raw := index .root.Values.services .key -}}
{{- $v := include "signet.values" . | fromYaml -}}
{{- if and $raw.enabled $v.autoscaling.enabled -}}
{{- $info := include "signet.info" . | fromYaml -}}
{{- $ctx := dict "root" .root "name" $info.name -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "signet.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "signet.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "signet.componentName" $ctx }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $v.autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
{{- end -}}
{{- end -}}

{{/* Egress rule for an external dependency: (dict "rule" .Values.networkPolicy.egress.kafka). */}}
{{- define "signet.egressRule" -}}
- ports:
    {{- toYaml .rule.ports | nindent 4 }}
  {{- with .rule.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "signet.networkpolicy" -}}
{{- $raw := index .root.Values.services .key -}}
{{- $np := .root.Values.networkPolicy -}}
{{- if and $raw.enabled $np.enabled -}}
{{- $root := .root -}}
{{- $key := .key -}}
{{- $info := include "signet.info" . | fromYaml -}}
{{- $ctx := dict "root" $root "name" $info.name -}}
{{- $catalog := include "signet.catalog" . | fromYaml -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "signet.componentName" $ctx }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "signet.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "signet.selectorLabels" $ctx | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    # gRPC from the Signet services that call this one, the prober, and API clients.
    - ports:
        - port: grpc
          protocol: TCP
      from:
        {{- range $caller := keys $catalog | sortAlpha }}
        {{- $c := index $catalog $caller }}
        {{- if and (has $key $c.calls) (index $root.Values.services $caller).enabled }}
        - podSelector:
            matchLabels:
              {{- include "signet.selectorLabels" (dict "root" $root "name" $c.name) | nindent 14 }}
        {{- end }}
        {{- end }}
        {{- if $root.Values.prober.enabled }}
        - podSelector:
            matchLabels:
              {{- include "signet.selectorLabels" (dict "root" $root "name" "prober") | nindent 14 }}
        {{- end }}
        {{- with $np.apiClients }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    - ports:
        - port: metrics
          protocol: TCP
      {{- with $np.metricsScrapers }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- if eq $key "caGateway" }}
    # Relying parties fetch CRLs, OCSP answers and CA certificates over HTTP.
    - ports:
        - port: http
          protocol: TCP
      {{- with $np.relyingParties }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
  egress:
    {{- include "signet.egressRule" (dict "rule" $np.egress.dns) | nindent 4 }}
    {{- range $callee := $info.calls }}
    {{- $c := index $catalog $callee }}
    {{- if (index $root.Values.services $callee).enabled }}
    - ports:
        - port: {{ (index $root.Values.services $callee).grpcPort }}
          protocol: TCP
      to:
        - podSelector:
            matchLabels:
              {{- include "signet.selectorLabels" (dict "root" $root "name" $c.name) | nindent 14 }}
    {{- end }}
    {{- end }}
    {{- include "signet.egressRule" (dict "rule" $np.egress.kafka) | nindent 4 }}
    {{- include "signet.egressRule" (dict "rule" $np.egress.database) | nindent 4 }}
    {{- include "signet.egressRule" (dict "rule" $np.egress.otlp) | nindent 4 }}
    {{- if eq $key "signer" }}
    {{- include "signet.egressRule" (dict "rule" $np.egress.hsm) | nindent 4 }}
    {{- if $raw.tsaUrl }}
    {{- include "signet.egressRule" (dict "rule" $np.egress.https) | nindent 4 }}
    {{- end }}
    {{- end }}
    {{- if eq $key "notify" }}
    {{- include "signet.egressRule" (dict "rule" $np.egress.smtp) | nindent 4 }}
    {{- include "signet.egressRule" (dict "rule" $np.egress.https) | nindent 4 }}
    {{- end }}
{{- end -}}
{{- end -}}

{{- define "signet.servicemonitor" -}}
{{- $raw := index .root.Values.services .key -}}
{{- $mon := .root.Values.monitoring.serviceMonitor -}}
{{- if and $raw.enabled $mon.enabled -}}
{{- $info := include "signet.info" . | fromYaml -}}
{{- $ctx := dict "root" .root "name" $info.name -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "signet.componentName" $ctx }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "signet.labels" $ctx | nindent 4 }}
    {{- with $mon.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "signet.selectorLabels" $ctx | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ .root.Release.Namespace }}]
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ $mon.interval }}
      relabelings:
        - targetLabel: service
          replacement: {{ $info.name }}
{{- end -}}
{{- end -}}
