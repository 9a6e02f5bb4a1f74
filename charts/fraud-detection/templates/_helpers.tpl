{{/* Chart name, truncated to the 63-character DNS label limit. */}}
{{- define "fraud-detection.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "fraud-detection.fullname" -}}
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

{{/* Resource names of the two components (kept short enough for the 63-character limit). */}}
{{- define "fraud-detection.api.fullname" -}}
{{- printf "%s-api" (include "fraud-detection.fullname" . | trunc 59 | trimSuffix "-") }}
{{- end }}
{{- define "fraud-detection.ui.fullname" -}}
{{- printf "%s-ui" (include "fraud-detection.fullname" . | trunc 60 | trimSuffix "-") }}
{{- end }}

{{- define "fraud-detection.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "fraud-detection.labels" -}}
helm.sh/chart: {{ include "fraud-detection.chart" . }}
app.kubernetes.io/name: {{ include "fraud-detection.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fraud-detection
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of a component: call with (dict "ctx" $ "component" "api"). */}}
{{- define "fraud-detection.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fraud-detection.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Full label set of a component. */}}
{{- define "fraud-detection.componentLabels" -}}
{{ include "fraud-detection.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "fraud-detection.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fraud-detection.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference: repository@digest when a digest is set, else repository:tag (tag defaults to appVersion). */}}
{{- define "fraud-detection.image" -}}
{{- $image := .image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .ctx.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{- define "fraud-detection.idHashKeySecretName" -}}
{{- default (printf "%s-id-hash-key" (include "fraud-detection.fullname" .)) .Values.api.idHashKey.existingSecret }}
{{- end }}

{{/* The in-chart Valkey's resource name and the Secret with its password and URL. */}}
{{- /* At most 52 characters: a StatefulSet name becomes part of its pods' 63-character revision label. */}}
{{- define "fraud-detection.valkey.fullname" -}}
{{- printf "%s-valkey" (include "fraud-detection.fullname" . | trunc 45 | trimSuffix "-") }}
{{- end }}
{{- define "fraud-detection.valkey.secretName" -}}
{{- default (printf "%s-auth" (include "fraud-detection.valkey.fullname" .)) .Values.history.valkey.existingSecret }}
{{- end }}

{{/* The API's FRAUD_HISTORY_* variables (only with history.enabled). */}}
{{- define "fraud-detection.historyEnv" -}}
{{- $h := .Values.history }}
{{- if $h.valkey.enabled }}
- name: FRAUD_HISTORY_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "fraud-detection.valkey.secretName" . }}
      key: url
{{- else if $h.existingSecret }}
- name: FRAUD_HISTORY_URL
  valueFrom:
    secretKeyRef:
      name: {{ $h.existingSecret }}
      key: {{ $h.existingSecretKey }}
{{- else }}
- name: FRAUD_HISTORY_URL
  value: {{ $h.url | quote }}
{{- end }}
- name: FRAUD_HISTORY_CLUSTER
  value: {{ $h.cluster | quote }}
- name: FRAUD_HISTORY_TIMEOUT_S
  value: {{ $h.timeoutSeconds | quote }}
{{- end }}

{{/* The CloudNativePG Cluster the chart makes for the ledger (ledger.cloudnativepg.enabled). */}}
{{- define "fraud-detection.ledger.cnpgName" -}}
{{- printf "%s-ledger" (include "fraud-detection.fullname" . | trunc 40 | trimSuffix "-") }}
{{- end }}

{{/* "true" when the chart makes the Secret with the URI itself (ledger.database.url). */}}
{{- define "fraud-detection.ledger.urlSecret" -}}
{{- if and .Values.ledger.enabled .Values.ledger.database.url }}true{{ end }}
{{- end }}

{{/* The Secret with the ledger's database URI: an existing one, the one CloudNativePG writes for
     the chart's Cluster (`<cluster>-app`, key `uri`), or the chart's from ledger.database.url. */}}
{{- define "fraud-detection.ledger.secretName" -}}
{{- if .Values.ledger.database.existingSecret }}{{ .Values.ledger.database.existingSecret }}
{{- else if .Values.ledger.cloudnativepg.enabled }}{{ include "fraud-detection.ledger.cnpgName" . }}-app
{{- else }}{{ printf "%s-ledger-db" (include "fraud-detection.fullname" . | trunc 53 | trimSuffix "-") }}
{{- end }}
{{- end }}
{{- define "fraud-detection.ledger.secretKey" -}}
{{- if .Values.ledger.database.existingSecret }}{{ .Values.ledger.database.existingSecretKey }}
{{- else if .Values.ledger.cloudnativepg.enabled }}uri
{{- else }}url
{{- end }}
{{- end }}

{{/* FRAUD_DATABASE_URL and the FRAUD_LEDGER_* settings every ledger container shares. */}}
{{- define "fraud-detection.ledgerEnv" -}}
{{- $l := .Values.ledger }}
- name: FRAUD_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "fraud-detection.ledger.secretName" . }}
      key: {{ include "fraud-detection.ledger.secretKey" . }}
- name: FRAUD_LEDGER_POOL_MIN_SIZE
  value: {{ $l.database.poolMinSize | quote }}
- name: FRAUD_LEDGER_POOL_MAX_SIZE
  value: {{ $l.database.poolMaxSize | quote }}
- name: FRAUD_LEDGER_CONNECT_TIMEOUT_S
  value: {{ $l.database.connectTimeoutSeconds | quote }}
- name: FRAUD_LEDGER_RETENTION_DAYS
  value: {{ $l.retentionDays | quote }}
{{- end }}

{{/* A ledger Job's pod spec: call with (dict "ctx" $ "command" "migrate" "resources" ...). */}}
{{- define "fraud-detection.ledgerJobPod" -}}
{{- $ := .ctx }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
automountServiceAccountToken: false
restartPolicy: Never
securityContext:
  {{- include "fraud-detection.podSecurityContext" $ | nindent 2 }}
containers:
  - name: {{ .command }}
    # The API image holds the ledger's CLI and its migrations (the same version as the API).
    image: {{ include "fraud-detection.image" (dict "ctx" $ "image" $.Values.api.image) | quote }}
    imagePullPolicy: {{ $.Values.api.image.pullPolicy }}
    # The Bento's source directory, where `service` is importable (the image's entrypoint,
    # which starts the server, is replaced).
    workingDir: /home/bentoml/bento/src
    command: ["python", "-m", "service.ledger", {{ .command | quote }}]
    env:
      {{- include "fraud-detection.ledgerEnv" $ | nindent 6 }}
    resources:
      {{- toYaml .resources | nindent 6 }}
    securityContext:
      {{- include "fraud-detection.containerSecurityContext" $ | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
{{- end }}

{{- define "fraud-detection.secretName" -}}
{{- default (printf "%s-auth" (include "fraud-detection.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/* Pod security context shared by every pod: non-root with the image's fixed UID/GID. */}}
{{- define "fraud-detection.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container security context shared by every container. */}}
{{- define "fraud-detection.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Default topology spread: best effort across nodes and zones. Call with (dict "ctx" $ "component" "api"). */}}
{{- define "fraud-detection.topologySpread" -}}
- maxSkew: 1
  topologyKey: kubernetes.io/hostname
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "fraud-detection.selectorLabels" . | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
- maxSkew: 1
  topologyKey: topology.kubernetes.io/zone
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "fraud-detection.selectorLabels" . | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end }}

{{/* Checks on value combinations the schema cannot express. */}}
{{- define "fraud-detection.validate" -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled }}
{{- fail "autoscaling.enabled and keda.enabled are mutually exclusive: KEDA creates its own HPA for the API" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be >= autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.keda.enabled (lt (int .Values.keda.maxReplicas) (int .Values.keda.minReplicas)) }}
{{- fail "keda.maxReplicas must be >= keda.minReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.inFlightRequests.enabled) (eq (int .Values.autoscaling.targetCPUUtilizationPercentage) 0) }}
{{- fail "autoscaling needs a metric: set autoscaling.targetCPUUtilizationPercentage > 0 or enable autoscaling.inFlightRequests" }}
{{- end }}
{{- if and .Values.keda.enabled (not .Values.keda.prometheus.enabled) (eq (int .Values.keda.cpuUtilization) 0) }}
{{- fail "keda needs a trigger: set keda.cpuUtilization > 0 or enable keda.prometheus" }}
{{- end }}
{{- if and .Values.ingress.enabled .Values.ingress.ui.enabled (not .Values.ui.enabled) }}
{{- fail "ingress.ui.enabled needs ui.enabled" }}
{{- end }}
{{- if and .Values.httpRoute.enabled .Values.httpRoute.ui.enabled (not .Values.ui.enabled) }}
{{- fail "httpRoute.ui.enabled needs ui.enabled" }}
{{- end }}
{{- $h := .Values.history }}
{{- if $h.enabled }}
{{- $stores := 0 }}
{{- range (list $h.url $h.existingSecret $h.valkey.enabled) }}{{ if . }}{{ $stores = add1 $stores }}{{ end }}{{ end }}
{{- if ne (int $stores) 1 }}
{{- fail "history.enabled needs exactly one store: history.existingSecret, history.url or history.valkey.enabled" }}
{{- end }}
{{- if and $h.url (regexMatch "^[a-z]+://[^/@]*:[^/@]+@" $h.url) }}
{{- fail "history.url must not hold a password (it would be stored in the Deployment): put the URL in a Secret and set history.existingSecret" }}
{{- end }}
{{- if and $h.cluster $h.valkey.enabled }}
{{- fail "history.cluster needs an external cluster: the in-chart Valkey is a single node" }}
{{- end }}
{{- else if $h.valkey.enabled }}
{{- fail "history.valkey.enabled needs history.enabled" }}
{{- end }}
{{- $l := .Values.ledger }}
{{- if and $l.cloudnativepg.enabled (not $l.enabled) }}
{{- fail "ledger.cloudnativepg.enabled needs ledger.enabled" }}
{{- end }}
{{- if $l.enabled }}
{{- $databases := add (ternary 1 0 (ne $l.database.existingSecret "")) (ternary 1 0 (ne $l.database.url "")) (ternary 1 0 $l.cloudnativepg.enabled) }}
{{- if ne (int $databases) 1 }}
{{- fail "ledger.enabled needs exactly one database: ledger.database.existingSecret, ledger.database.url or ledger.cloudnativepg.enabled" }}
{{- end }}
{{- if lt (int $l.database.poolMaxSize) (int $l.database.poolMinSize) }}
{{- fail "ledger.database.poolMaxSize must be >= ledger.database.poolMinSize" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Egress rule to the ledger's PostgreSQL: ledger.database.egressTo, else the chart's
     CloudNativePG pods, else any address on its port. */}}
{{- define "fraud-detection.ledgerEgress" -}}
- ports:
    - port: {{ .Values.ledger.database.port }}
      protocol: TCP
  {{- if .Values.ledger.database.egressTo }}
  to:
    {{- toYaml .Values.ledger.database.egressTo | nindent 4 }}
  {{- else if .Values.ledger.cloudnativepg.enabled }}
  to:
    - podSelector:
        matchLabels:
          cnpg.io/cluster: {{ include "fraud-detection.ledger.cnpgName" . }}
  {{- end }}
{{- end }}

{{/* Egress rule allowing DNS lookups through the cluster DNS. */}}
{{- define "fraud-detection.dnsEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          k8s-app: kube-dns
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* Default affinity: prefer one replica per node. Call with (dict "ctx" $ "component" "api"). */}}
{{- define "fraud-detection.podAntiAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "fraud-detection.selectorLabels" . | nindent 12 }}
{{- end }}
