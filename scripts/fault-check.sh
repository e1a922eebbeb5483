#!/usr/bin/env bash
# A short fault check on a deployed release (the deploy workflow runs it after `helm test`):
# while ticks flow, delete the Redpanda broker's pod and a quality checker's pod, wait for both
# to come back ready, then require bars and window features to grow past what they held before
# the faults. `make smoke` afterwards checks helm test and every pod's health again.
# Environment: NAMESPACE, RELEASE (as in the Makefile), KUBECTL, TIMEOUT_S (per wait).
set -euo pipefail

NAMESPACE=${NAMESPACE:-marketpipe}
RELEASE=${RELEASE:-marketpipe}
KUBECTL=${KUBECTL:-kubectl}
TIMEOUT_S=${TIMEOUT_S:-900}

log() { printf 'fault-check: %s\n' "$*" >&2; }
k() { "$KUBECTL" -n "$NAMESPACE" "$@"; }
selector() { printf 'app.kubernetes.io/instance=%s,app.kubernetes.io/component=%s' "$RELEASE" "$1"; }
first_pod() {
    k get pod -l "$(selector "$1")" --field-selector=status.phase=Running \
        -o jsonpath='{.items[0].metadata.name}'
}

# The smaller of the bars and window_features row counts, as `marketpipe smoke` reports them
# from inside the producer's pod (its image, settings and secrets).
rows() {
    local line
    line=$(k exec "$(first_pod producer)" -- marketpipe smoke --sink postgres --timeout 0 \
        2>/dev/null | grep '^postgres: ' || true)
    local bars features
    bars=$(sed -nE 's/.*[ :]bars ([0-9]+) rows.*/\1/p' <<<"$line")
    features=$(sed -nE 's/.*window_features ([0-9]+) rows.*/\1/p' <<<"$line")
    if [ -z "$bars" ] || [ -z "$features" ]; then
        log "could not read the row counts from: ${line:-nothing}"
        return 1
    fi
    echo $((bars < features ? bars : features))
}

# Wait until the pod of that name exists again, with another uid, and is Ready.
await_recreated() {
    local pod=$1 old_uid=$2 deadline=$((SECONDS + TIMEOUT_S)) uid ready
    while [ "$SECONDS" -lt "$deadline" ]; do
        uid=$(k get pod "$pod" -o jsonpath='{.metadata.uid}' 2>/dev/null || true)
        ready=$(k get pod "$pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' \
            2>/dev/null || true)
        if [ -n "$uid" ] && [ "$uid" != "$old_uid" ] && [ "$ready" = "True" ]; then
            log "$pod is back and ready after ${SECONDS}s"
            return 0
        fi
        sleep 5
    done
    log "$pod did not come back ready within ${TIMEOUT_S}s"
    k describe pod "$pod" || true
    return 1
}

before=$(rows)
log "before the faults: at least $before rows in bars and window_features"

victims=("$(first_pod redpanda)" "$(first_pod quality)")
declare -A uids
for pod in "${victims[@]}"; do
    uids[$pod]=$(k get pod "$pod" -o jsonpath='{.metadata.uid}')
done
log "deleting ${victims[*]} while ticks flow"
k delete pod "${victims[@]}" --wait=false
for pod in "${victims[@]}"; do
    await_recreated "$pod" "${uids[$pod]}"
done

want=$((before + 1))
log "waiting up to ${TIMEOUT_S}s for more than $before rows in bars and window_features"
k exec "$(first_pod producer)" -- marketpipe smoke --sink postgres --min-rows "$want" \
    --timeout "$TIMEOUT_S"
log "the pipeline recovered: new rows arrived after the broker and a checker were killed"
