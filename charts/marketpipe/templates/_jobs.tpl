{{/*
A hook Job running one marketpipe command, post-install/post-upgrade unless "hooks" says
otherwise. Call with (dict "root" $ "name" "topics" "weight" "0" "args" (list "topics")).
*/}}
{{- define "marketpipe.hookJob" -}}
{{- $root := .root }}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "marketpipe.componentName" (list $root .name) }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "marketpipe.labels" (list $root .name) | nindent 4 }}
  annotations:
    helm.sh/hook: {{ .hooks | default "post-install,post-upgrade" }}
    helm.sh/hook-weight: {{ .weight | quote }}
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ $root.Values.jobs.backoffLimit }}
  activeDeadlineSeconds: {{ $root.Values.jobs.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: 3600
  template:
    metadata:
      labels:
        {{- include "marketpipe.labels" (list $root .name) | nindent 8 }}
    spec:
      restartPolicy: Never
      serviceAccountName: {{ include "marketpipe.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- include "marketpipe.podSpecCommon" $root | nindent 6 }}
      containers:
        - name: {{ .name }}
          image: {{ include "marketpipe.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          args:
            {{- toYaml .args | nindent 12 }}
          envFrom:
            {{- include "marketpipe.envFrom" (list $root "jobs") | nindent 12 }}
          env:
            {{- include "marketpipe.secretEnv" $root | nindent 12 }}
          resources:
            {{- toYaml $root.Values.jobs.resources | nindent 12 }}
          volumeMounts:
            {{- include "marketpipe.scratchMounts" $root | nindent 12 }}
      volumes:
        {{- include "marketpipe.scratchVolumes" $root | nindent 8 }}
{{- end }}
