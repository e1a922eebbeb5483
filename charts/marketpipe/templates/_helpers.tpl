{{/*
Names, labels and the shared pieces of every marketpipe pod.
*/}}

{{- define "marketpipe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "marketpipe.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* "<fullname>-<component>", 63 characters at most. Call with (list $ "component"). */}}
{{- define "marketpipe.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "marketpipe.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "marketpipe.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels of a component. Call with (list $ "component"). */}}
{{- define "marketpipe.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "marketpipe.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* All labels of a component. Call with (list $ "component"). */}}
{{- define "marketpipe.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "marketpipe.chart" $root }}
{{ include "marketpipe.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: marketpipe
{{- end }}

{{- define "marketpipe.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "marketpipe.sparkImage" -}}
{{- $img := .Values.features.image }}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) }}
{{- end }}

{{- define "marketpipe.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "marketpipe.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where the bundled or external services are. */}}
{{- define "marketpipe.kafkaBootstrap" -}}
{{- if .Values.redpanda.enabled }}
{{- printf "%s:9092" (include "marketpipe.componentName" (list . "redpanda")) }}
{{- else }}
{{- required "kafka.bootstrapServers is required when redpanda.enabled is false" .Values.kafka.bootstrapServers }}
{{- end }}
{{- end }}

{{- define "marketpipe.postgresHost" -}}
{{- if .Values.timescaledb.enabled }}
{{- include "marketpipe.componentName" (list . "timescaledb") }}
{{- else }}
{{- required "postgres.host is required when timescaledb.enabled is false" .Values.postgres.host }}
{{- end }}
{{- end }}

{{- define "marketpipe.postgresSecret" -}}
{{- if .Values.postgres.existingSecret }}
{{- .Values.postgres.existingSecret }}
{{- else if .Values.timescaledb.enabled }}
{{- include "marketpipe.componentName" (list . "timescaledb") }}
{{- else }}
{{- fail "postgres.existingSecret is required when timescaledb.enabled is false" }}
{{- end }}
{{- end }}

{{- define "marketpipe.minioSecret" -}}
{{- default (include "marketpipe.componentName" (list . "minio")) .Values.minio.auth.existingSecret }}
{{- end }}

{{- define "marketpipe.s3Endpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "http://%s:9000" (include "marketpipe.componentName" (list . "minio")) }}
{{- else }}
{{- .Values.s3.endpoint }}
{{- end }}
{{- end }}

{{/* The Secret and keys holding the S3 credentials the services use. */}}
{{- define "marketpipe.s3SecretRef" -}}
{{- if .Values.s3.existingSecret }}
name: {{ .Values.s3.existingSecret }}
accessKey: {{ .Values.s3.accessKeyIdKey }}
secretKey: {{ .Values.s3.secretAccessKeyKey }}
{{- else if .Values.minio.enabled }}
name: {{ include "marketpipe.minioSecret" . }}
accessKey: {{ .Values.minio.auth.rootUserKey }}
secretKey: {{ .Values.minio.auth.rootPasswordKey }}
{{- else }}
{{- fail "s3.existingSecret is required when minio.enabled is false" }}
{{- end }}
{{- end }}

{{/* Secrets as environment: the database password and the S3 credentials, never literals. */}}
{{- define "marketpipe.secretEnv" -}}
{{- $s3 := include "marketpipe.s3SecretRef" . | fromYaml -}}
{{- with .Values.kafka.existingSecret }}
- name: MARKETPIPE_KAFKA__SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.kafka.usernameKey }}
- name: MARKETPIPE_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.kafka.passwordKey }}
{{- end }}
- name: MARKETPIPE_POSTGRES__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "marketpipe.postgresSecret" . }}
      key: {{ .Values.postgres.passwordKey }}
- name: MARKETPIPE_S3__ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s3.name }}
      key: {{ $s3.accessKey }}
- name: MARKETPIPE_S3__SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3.name }}
      key: {{ $s3.secretKey }}
{{- end }}

{{/* envFrom of a marketpipe container: shared settings, then the component's own. */}}
{{- define "marketpipe.envFrom" -}}
{{- $root := index . 0 -}}
- configMapRef:
    name: {{ include "marketpipe.componentName" (list $root "settings") }}
- configMapRef:
    name: {{ include "marketpipe.componentName" (list $root (index . 1)) }}
{{- end }}

{{/* Liveness on the heartbeat the main loop beats (MARKETPIPE_HEALTH_FILE), which goes on
beating while a stage waits out an outage within its give-up time (MARKETPIPE_KAFKA__GIVE_UP_S,
MARKETPIPE_FEATURES__SINK_RETRY_GIVE_UP_S), so liveness never kills a stage that is healing.
Readiness (`health --ready`) says whether it is doing useful work: not ready while it retries
(broker unreachable, a sink down), so `kubectl get pods` and `marketpipe cluster` show who is
waiting. The startup probe allows for the wait for the topics Job
(MARKETPIPE_KAFKA__TOPIC_WAIT_S), during which the heartbeat is beaten too. */}}
{{- define "marketpipe.heartbeatProbes" -}}
startupProbe:
  exec:
    command: ["marketpipe", "health", "--max-age", "30"]
  periodSeconds: 10
  timeoutSeconds: 10
  failureThreshold: 30
livenessProbe:
  exec:
    command: ["marketpipe", "health", "--max-age", "{{ .Values.livenessMaxAgeSeconds }}"]
  periodSeconds: 20
  timeoutSeconds: 10
  failureThreshold: 3
readinessProbe:
  exec:
    command: ["marketpipe", "health", "--ready", "--max-age", "{{ .Values.livenessMaxAgeSeconds }}"]
  periodSeconds: 10
  timeoutSeconds: 10
  failureThreshold: 2
{{- end }}

{{/* Writable scratch space under a read-only root filesystem. */}}
{{- define "marketpipe.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: work
  mountPath: /work
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  mountPath: /etc/marketpipe/kafka-ca
  readOnly: true
{{- end }}
{{- end }}

{{- define "marketpipe.scratchVolumes" -}}
- name: tmp
  emptyDir: {}
- name: work
  emptyDir: {}
{{- if .Values.kafka.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret }}
    items:
      - key: {{ .Values.kafka.caKey }}
        path: {{ .Values.kafka.caKey }}
{{- end }}
{{- end }}

{{/* Settings of an external Kafka's security (values kafka.*), for the settings ConfigMap. */}}
{{- define "marketpipe.kafkaSecurity" -}}
{{- $k := .Values.kafka }}
{{- if and .Values.redpanda.enabled (or (ne $k.securityProtocol "PLAINTEXT") $k.saslMechanism) }}
{{- fail "kafka.securityProtocol and kafka.saslMechanism are for an external Kafka: set redpanda.enabled=false" }}
{{- end }}
{{- if and $k.saslMechanism (not $k.existingSecret) }}
{{- fail "kafka.saslMechanism needs kafka.existingSecret (a Secret with the SASL user name and password)" }}
{{- end }}
{{- if and $k.saslMechanism (not (hasPrefix "SASL_" $k.securityProtocol)) }}
{{- fail "kafka.saslMechanism needs kafka.securityProtocol SASL_PLAINTEXT or SASL_SSL" }}
{{- end }}
MARKETPIPE_KAFKA__SECURITY_PROTOCOL: {{ $k.securityProtocol }}
{{- with $k.saslMechanism }}
MARKETPIPE_KAFKA__SASL_MECHANISM: {{ . }}
{{- end }}
{{- with $k.caSecret }}
MARKETPIPE_KAFKA__SSL_CA_LOCATION: /etc/marketpipe/kafka-ca/{{ $k.caKey }}
{{- end }}
{{- end }}

{{/* Where a pod may run and how its images are pulled: every pod of the chart. */}}
{{- define "marketpipe.podScheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* A marketpipe pod: scheduling and values.podSecurityContext. */}}
{{- define "marketpipe.podSpecCommon" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- include "marketpipe.podScheduling" . }}
{{- end }}

{{/* Spark's s3a properties (checkpoints and state on the object store), both modes. Spark
properties of a mode: this, its own, then values.features.sparkConf over all of them. */}}
{{- define "marketpipe.sparkS3aConf" -}}
{{- $endpoint := include "marketpipe.s3Endpoint" . }}
{{- $conf := dict "spark.hadoop.fs.s3a.path.style.access" "true" "spark.hadoop.fs.s3a.endpoint.region" .Values.s3.region }}
{{- if $endpoint }}
{{- $_ := set $conf "spark.hadoop.fs.s3a.endpoint" $endpoint }}
{{- $_ := set $conf "spark.hadoop.fs.s3a.connection.ssl.enabled" (toString (hasPrefix "https://" $endpoint)) }}
{{- end }}
{{- toYaml $conf }}
{{- end }}

{{/* The S3 credentials as the standard AWS variables, which s3a reads. */}}
{{- define "marketpipe.awsEnv" -}}
{{- $s3 := include "marketpipe.s3SecretRef" . | fromYaml -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s3.name }}
      key: {{ $s3.accessKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s3.name }}
      key: {{ $s3.secretKey }}
{{- end }}

{{/* The container port of a stage's /metrics (metrics.enabled), under "ports:". */}}
{{- define "marketpipe.metricsPort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end }}
{{- end }}
