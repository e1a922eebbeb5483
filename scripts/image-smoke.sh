#!/usr/bin/env bash
# Build the services image and run it against the local stack, the way the chart runs it
# (non-root, read-only root filesystem, scratch tmpfs): `make image-smoke`.
#
# Works with docker or podman (CONTAINER_TOOL). Where no base image can be pulled (the
# development machines), build a base first and pass it:
#   debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
#     bookworm /tmp/rootfs && tar -C /tmp/rootfs -c . | podman import - localhost/python-base:3.11
#   PYTHON_BASE=localhost/python-base:3.11 make image-smoke
# BUILD_ARGS and RUN_ARGS add options to `build` and `run` (a proxy's CA bundle, ulimits).
set -euo pipefail

TOOL=${CONTAINER_TOOL:-docker}
IMAGE=${IMAGE:-marketpipe:smoke}
MP=${MP:-.venv/bin/marketpipe}
read -r -a build_args <<<"${BUILD_ARGS:-}"
read -r -a run_args <<<"${RUN_ARGS:-}"
base=()
if [ -n "${PYTHON_BASE:-}" ]; then base=(--build-arg "PYTHON_BASE=$PYTHON_BASE"); fi

log() { printf 'image-smoke: %s\n' "$*" >&2; }

log "building $IMAGE"
"$TOOL" build "${build_args[@]}" "${base[@]}" -f images/python/Dockerfile -t "$IMAGE" .

# Topics and a consumer group of this run's own, so nothing here touches the demo's or yours.
run_id=image-smoke-$(date +%Y%m%d-%H%M%S)
names=(
    "MARKETPIPE_KAFKA__TOPIC_RAW=$run_id.ticks.raw"
    "MARKETPIPE_KAFKA__TOPIC_VALID=$run_id.ticks.valid"
    "MARKETPIPE_KAFKA__TOPIC_DLQ=$run_id.ticks.dlq"
    "MARKETPIPE_KAFKA__TOPIC_QUALITY_STATE=$run_id.ticks.quality.state"
    "MARKETPIPE_QUALITY__GROUP_ID=$run_id.quality"
    "MARKETPIPE_QUALITY__INSTANCE_ID=$run_id"
)
"$MP" local up >/dev/null
env "${names[@]}" "$MP" topics >/dev/null
env_args=()
for name in "${names[@]}"; do env_args+=(-e "$name"); done
run() {
    "$TOOL" run --rm --network host --read-only --tmpfs /tmp --tmpfs /work \
        --env-file .marketpipe/local/endpoints.env "${env_args[@]}" "${run_args[@]}" "$IMAGE" "$@"
}

uid=$("$TOOL" run --rm "${run_args[@]}" --entrypoint id "$IMAGE" -u)
[ "$uid" != "0" ] || { log "the image runs as root"; exit 1; }
log "runs as uid $uid"
run db migrate
run bucket
run produce --count 2000 --tps 0 | tee /dev/stderr | grep -q "2000 acknowledged, 0 failed"
run quality --until-idle 3 | tee /dev/stderr | grep -q "(balanced)"
log "OK: the services image migrated, created the bucket, produced and checked ticks"
