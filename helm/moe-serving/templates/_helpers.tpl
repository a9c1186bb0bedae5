{{/* Chart name, at most 63 characters. */}}
{{- define "moe-serving.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name, at most 63 characters (DNS label limit); the release name alone when it already contains
the chart name.
*/}}
{{- define "moe-serving.fullname" -}}
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

{{/* Name of one component's objects: <fullname>-router, <fullname>-expert (the suffix is kept within 63). */}}
{{- define "moe-serving.componentName" -}}
{{- $full := include "moe-serving.fullname" .root }}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component }}
{{- end }}

{{/* Chart name and version, as used by the helm.sh/chart label. */}}
{{- define "moe-serving.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one component; selectors are immutable, so only name, instance and component.
Call with (dict "root" $ "component" "router").
*/}}
{{- define "moe-serving.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moe-serving.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Common labels of one component. Call with (dict "root" $ "component" "router"). */}}
{{- define "moe-serving.labels" -}}
helm.sh/chart: {{ include "moe-serving.chart" .root }}
{{ include "moe-serving.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: {{ include "moe-serving.name" .root }}
{{- with .root.Values.commonLabels }}
{{ tpl (toYaml .) $.root }}
{{- end }}
{{- end }}

{{/*
The label selector the router watches, as a string: exactly the expert pods' selector labels.
*/}}
{{- define "moe-serving.expertSelector" -}}
{{- $labels := include "moe-serving.selectorLabels" (dict "root" . "component" "expert") | fromYaml }}
{{- $pairs := list }}
{{- range $k := keys $labels | sortAlpha }}
{{- $pairs = append $pairs (printf "%s=%s" $k (get $labels $k)) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* Service account of the router. */}}
{{- define "moe-serving.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "moe-serving.componentName" (dict "root" . "component" "router")) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Container image reference; the tag defaults to the chart's appVersion, a digest wins over the tag. */}}
{{- define "moe-serving.image" -}}
{{- $registry := .image.registry | default .root.Values.global.imageRegistry }}
{{- $repo := ternary (printf "%s/%s" $registry .image.repository) .image.repository (not (empty $registry)) }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (.image.tag | default .root.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* JAVA_TOOL_OPTIONS from a component's jvm values: heap, direct memory, the Vector API, extra options. */}}
{{- define "moe-serving.javaToolOptions" -}}
{{- /* The "=" form: the JVM rejects "--add-modules X" with a space in JAVA_TOOL_OPTIONS. */}}
{{- $opts := list "--add-modules=jdk.incubator.vector" }}
{{- /* -Xms = -Xmx: a heap that never grows or shrinks (growing it page-faults fresh memory inside requests). */}}
{{- with .maxHeap }}{{ $opts = concat $opts (list (printf "-Xms%s" .) (printf "-Xmx%s" .)) }}{{ end }}
{{- with .maxDirectMemory }}{{ $opts = append $opts (printf "-XX:MaxDirectMemorySize=%s" .) }}{{ end }}
{{- if .transparentHugePages }}{{ $opts = append $opts "-XX:+UseTransparentHugePages" }}{{ end }}
{{- with .extraOptions }}{{ $opts = concat $opts . }}{{ end }}
{{- join " " $opts }}
{{- end }}

{{/* Mount path of the model volume. */}}
{{- define "moe-serving.modelPath" -}}
{{- .Values.model.mountPath }}
{{- end }}

{{/*
The model volume, as a pod spec volume named "model", from model.source:
pvc | hostPath | image | emptyDir (emptyDir is filled by the download init container).
*/}}
{{- define "moe-serving.modelVolume" -}}
- name: model
{{- $m := .Values.model }}
{{- if eq $m.source "pvc" }}
  persistentVolumeClaim:
    claimName: {{ $m.pvc.claimName | default (printf "%s-model" (include "moe-serving.fullname" .)) }}
    readOnly: true
{{- else if eq $m.source "hostPath" }}
  hostPath:
    path: {{ required "model.hostPath.path is required when model.source is hostPath" $m.hostPath.path }}
    type: {{ $m.hostPath.type }}
{{- else if eq $m.source "image" }}
  image:
    reference: {{ required "model.image.reference is required when model.source is image" $m.image.reference }}
    pullPolicy: {{ $m.image.pullPolicy }}
{{- else if eq $m.source "emptyDir" }}
  emptyDir:
    {{- with $m.download.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- else }}
{{- fail (printf "model.source must be pvc, hostPath, image or emptyDir, not %q" $m.source) }}
{{- end }}
{{- end }}

{{/* Init container downloading the checkpoint into the emptyDir model volume (model.source=emptyDir). */}}
{{- define "moe-serving.modelDownloadInit" -}}
{{- $m := .Values.model }}
{{- if eq $m.source "emptyDir" }}
- name: download-model
  image: {{ $m.download.image }}
  imagePullPolicy: IfNotPresent
  command: ["/bin/sh", "-ec"]
  args:
    - |
      {{- if $m.download.script }}
      {{- $m.download.script | nindent 6 }}
      {{- else }}
      cd "$MODEL_DIR"
      for f in $MODEL_FILES; do
        if [ ! -s "$f" ]; then
          curl -fL --retry 5 -o "$f.part" "$MODEL_URL/$f"
          mv "$f.part" "$f"
        fi
      done
      {{- end }}
  env:
    - name: MODEL_DIR
      value: {{ $m.mountPath | quote }}
    - name: MODEL_URL
      value: {{ required "model.download.url is required when model.source is emptyDir" $m.download.url | quote }}
    - name: MODEL_FILES
      value: {{ join " " $m.download.files | quote }}
    {{- with $m.download.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  volumeMounts:
    - name: model
      mountPath: {{ $m.mountPath }}
  securityContext:
    {{- toYaml $.Values.containerSecurityContext | nindent 4 }}
  {{- with $m.download.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end }}

{{/*
--server.port of one component: its metrics port (the actuator's HTTP server), or -1 (no HTTP server) when metrics
are disabled. Fails when the metrics port collides with the component's gRPC port, and while the removed value
metrics.port is set (values.schema.json still accepts it so that this message, not a schema error, tells what to do).
Call with (dict "root" $ "component" "router").
*/}}
{{- define "moe-serving.serverPortArg" -}}
{{- $v := .root.Values }}
{{- if not (kindIs "invalid" $v.metrics.port) }}
{{- fail (printf "metrics.port (%v) was removed: router and expert servers now have a metrics port each. Set metrics.router.port (router, default 8080) and/or metrics.expert.port (expert servers, default 8081) instead and remove metrics.port from your values (e.g. helm upgrade --set metrics.port=null)" $v.metrics.port) }}
{{- end }}
{{- if $v.metrics.enabled }}
{{- $port := int (get $v.metrics .component).port }}
{{- if eq $port (int (get $v .component).grpcPort) }}
{{- fail (printf "metrics.%s.port must differ from %s.grpcPort (%d)" .component .component $port) }}
{{- end }}
{{- printf "--server.port=%d" $port }}
{{- else }}
{{- print "--server.port=-1" }}
{{- end }}
{{- end }}

{{/* The container port named metrics of one component (nothing when metrics are disabled). */}}
{{- define "moe-serving.metricsContainerPort" -}}
{{- if .root.Values.metrics.enabled }}
- name: metrics
  containerPort: {{ (get .root.Values.metrics .component).port }}
  protocol: TCP
{{- end }}
{{- end }}

{{/* The Service port named metrics of one component (nothing when metrics are disabled). */}}
{{- define "moe-serving.metricsServicePort" -}}
{{- if .root.Values.metrics.enabled }}
- name: metrics
  port: {{ (get .root.Values.metrics .component).port }}
  targetPort: metrics
  protocol: TCP
  appProtocol: http
{{- end }}
{{- end }}

{{/*
PromQL label matchers of the PrometheusRule (prometheusRule.selector through tpl, default namespace="<release
namespace>"), inserted into every metric selector of every rule.
*/}}
{{- define "moe-serving.ruleSelector" -}}
{{- with .Values.prometheusRule.selector }}
{{- tpl . $ | trim }}
{{- else }}
{{- printf "namespace=%q" .Release.Namespace }}
{{- end }}
{{- end }}
