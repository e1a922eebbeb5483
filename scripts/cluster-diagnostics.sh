#!/usr/bin/env bash
# Everything needed to debug a failed deploy without the cluster: the release's status and
# history, every object, events in order, every pod described, and the logs of every container
# (init containers and Spark executors too), of the running and of the previous incarnation.
# Usage: scripts/cluster-diagnostics.sh OUT_DIR  (NAMESPACE, RELEASE, KUBECTL, HELM from the
# environment). Never fails: it runs when something else already has.
set -uo pipefail

OUT=${1:?usage: cluster-diagnostics.sh OUT_DIR}
NAMESPACE=${NAMESPACE:-marketpipe}
RELEASE=${RELEASE:-marketpipe}
KUBECTL=${KUBECTL:-kubectl}
HELM=${HELM:-helm}

mkdir -p "$OUT/logs"
k() { "$KUBECTL" -n "$NAMESPACE" "$@"; }
save() {  # save FILE COMMAND...: the command's output and errors, never its exit status
    local file=$1; shift
    "$@" >"$OUT/$file" 2>&1 || true
}

save helm-status.txt "$HELM" status "$RELEASE" -n "$NAMESPACE" --show-resources
save helm-history.txt "$HELM" history "$RELEASE" -n "$NAMESPACE"
save helm-values.yaml "$HELM" get values "$RELEASE" -n "$NAMESPACE" --all
save objects.txt k get all,pvc,jobs,configmaps,networkpolicies,events -o wide
save events.txt k get events --sort-by=.lastTimestamp
save pods-describe.txt k describe pods
save jobs-describe.txt k describe jobs
save nodes-describe.txt "$KUBECTL" describe nodes

for pod in $(k get pods -o jsonpath='{.items[*].metadata.name}'); do
    for container in $(k get pod "$pod" \
        -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}'); do
        save "logs/$pod.$container.log" k logs "$pod" -c "$container" --timestamps
        save "logs/$pod.$container.previous.log" k logs "$pod" -c "$container" --previous \
            --timestamps
    done
done
echo "cluster-diagnostics: wrote $OUT"
