#!/usr/bin/env bash
# `make demo`: the whole local pipeline on embedded defaults, for about a minute.
# Local stack (broker, PostgreSQL, S3 server) -> synthetic producer with injected faults ->
# quality checker -> Spark features job -> DuckDB + PostgreSQL (hot) and Parquet on S3 (cold).
# Then it shows what happened: the checker's accounting, DLQ reasons, the job's latency and
# late-tick counts, the newest features per symbol, the Parquet objects, the validator's verdict.
set -euo pipefail
MP=${MP:-.venv/bin/marketpipe}
DURATION=${DEMO_DURATION:-40}
TPS=${DEMO_TPS:-1000}
RUN=demo-$(date +%Y%m%d-%H%M%S)
OUT=.marketpipe/demo/$RUN
mkdir -p "$OUT"

# Each run has topics of its own, so the features job reads this run's ticks and nothing else
# (and the checker's per-symbol sequence state starts afresh with the producer's).
export MARKETPIPE_KAFKA__TOPIC_RAW=$RUN.ticks.raw
export MARKETPIPE_KAFKA__TOPIC_VALID=$RUN.ticks.valid
export MARKETPIPE_KAFKA__TOPIC_DLQ=$RUN.ticks.dlq
export MARKETPIPE_KAFKA__TOPIC_QUALITY_STATE=$RUN.ticks.quality.state
# A consumer group of its own too: a static member another run left behind in a shared group
# would hold the group's partitions (the local broker never evicts it).
export MARKETPIPE_QUALITY__GROUP_ID=$RUN.quality

echo "== local stack"
"$MP" local up
"$MP" db migrate
"$MP" topics

# Features into every sink: DuckDB and PostgreSQL (hot), Parquet in the local S3 bucket (cold).
bucket=$("$MP" settings | sed -n 's/^MARKETPIPE_S3__BUCKET=//p')
export MARKETPIPE_FEATURES__SINKS=duckdb,postgres,parquet
export MARKETPIPE_FEATURES__ARCHIVE_ROOT="s3://${bucket:-marketpipe}/cold"
export MARKETPIPE_FEATURES__CHECKPOINT_DIR="$OUT/checkpoints"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

echo
echo "== features job (background; Spark takes a few seconds to start)"
"$MP" features > "$OUT/features.txt" 2> "$OUT/features.log" &
features=$!
pids+=("$features")
for _ in $(seq 120); do
    grep -q "streaming queries over" "$OUT/features.log" && break
    kill -0 "$features" 2>/dev/null || { tail -20 "$OUT/features.log"; exit 1; }
    sleep 0.5
done
sleep 3  # the first (empty) micro-batches
since=$(date +%s%3N)

echo
echo "== quality checker (background) + ${DURATION}s of synthetic ticks at ${TPS}/s with faults"
"$MP" quality --instance-id demo --until-idle 5 > "$OUT/quality.txt" &
checker=$!
pids+=("$checker")
"$MP" produce --duration "$DURATION" --tps "$TPS" \
    --symbols AAPL:189.5,MSFT:415,NVDA:118,ETH-USD:3150,BTC-USD:64000 --volatility 0.6 \
    --jitter-ms 2 --malformed 0.002 --crossed 0.002 --duplicate 0.002 --out-of-order 0.002
wait "$checker"
sleep 3  # the job's last micro-batches
until=$(date +%s%3N)
kill -TERM "$features"
wait "$features" || true

echo
echo "== what the checker did (every message accounted for)"
cat "$OUT/quality.txt"

echo
echo "== ticks.dlq, this run, by reason"
"$MP" summary --topic "$MARKETPIPE_KAFKA__TOPIC_DLQ" | sed -n 1,2p

echo
echo "== what the features job did (latency = written_at - newest tick in the row)"
cat "$OUT/features.txt"

echo
"$MP" latest

echo
echo "== cold Parquet (browse it in the MinIO console on a cluster)"
"$MP" cold

echo
echo "== validator: this run's bars and window features recomputed from the archive with DuckDB"
"$MP" validate --start "$since" --end "$until"

trap - EXIT
echo
echo "The stack keeps running: \`$MP local status\`, \`$MP local down\` to stop it."
