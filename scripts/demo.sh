#!/usr/bin/env bash
# `make demo`: the whole local pipeline on embedded defaults, in about two minutes.
# Local stack (broker, PostgreSQL, S3 server) -> synthetic producer with injected faults ->
# quality checker -> Spark features job -> DuckDB + PostgreSQL (hot) and Parquet on S3 (cold),
# and the web dashboard over PostgreSQL. The producer first publishes 45 minutes of generated
# market history (fast), then goes on live for 40 s: enough market time for every 1-minute
# bar, sliding window and indicator (SMA/EMA 20, RSI 14, MACD 12/26/9) to exist.
# Then it shows what happened: the checker's accounting, DLQ reasons, the job's latency and
# late-tick counts, the newest features per symbol, the Parquet objects, the validator's verdict.
set -euo pipefail
MP=${MP:-.venv/bin/marketpipe}
DURATION=${DEMO_DURATION:-40}
TPS=${DEMO_TPS:-1000}
HISTORY=${DEMO_HISTORY:-2700}          # seconds of market history before the live part
HISTORY_TPS=${DEMO_HISTORY_TPS:-100}   # its ticks per second of market time
DASHBOARD_PORT=${DEMO_DASHBOARD_PORT:-8501}
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
# The generated history has event times up to 45 minutes old: without this the checker would
# (rightly) call it stale. The live part keeps every other rule.
export MARKETPIPE_QUALITY__HISTORICAL_SOURCES=replay,synthetic
# Hot and cold stores of its own too: the history overlaps the market time of any demo run in
# the last 45 minutes, and the validator compares this run's archive with this run's rows.
# (The database is chosen after `local up`, which records the stack's default one.)
export MARKETPIPE_FEATURES__DUCKDB_PATH=$OUT/marketpipe.duckdb

echo "== local stack"
"$MP" local up
export MARKETPIPE_POSTGRES__DATABASE=demo_${RUN//[^0-9]/}
"$MP" db migrate --create-database
"$MP" topics

# Features into every sink: DuckDB and PostgreSQL (hot), Parquet in the local S3 bucket (cold).
bucket=$("$MP" settings | sed -n 's/^MARKETPIPE_S3__BUCKET=//p')
export MARKETPIPE_FEATURES__SINKS=duckdb,postgres,parquet
export MARKETPIPE_FEATURES__ARCHIVE_ROOT="s3://${bucket:-marketpipe}/cold/$RUN"
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
since=$(( $(date +%s%3N) - HISTORY * 1000 ))

echo
echo "== dashboard (over PostgreSQL: the running job holds the DuckDB file)"
dashboard_url=http://127.0.0.1:$DASHBOARD_PORT
if (exec 3<>"/dev/tcp/127.0.0.1/$DASHBOARD_PORT") 2>/dev/null; then
    echo "port $DASHBOARD_PORT is taken (an earlier demo's dashboard?): stop it to see this run" \
        "here, or set DEMO_DASHBOARD_PORT"
else
    # Detached: it stays up after the demo, to look around in.
    setsid "$MP" dashboard --sink postgres --port "$DASHBOARD_PORT" \
        > "$OUT/dashboard.log" 2>&1 < /dev/null &
    echo "$!" > "$OUT/dashboard.pid"
    echo "open $dashboard_url (it fills in as the features job writes; log: $OUT/dashboard.log)"
fi

echo
echo "== quality checker (background) + $((HISTORY / 60)) min of market history at" \
    "${HISTORY_TPS} ticks/s, then ${DURATION}s live at ${TPS}/s, with faults"
"$MP" quality --instance-id demo --until-idle 5 > "$OUT/quality.txt" &
checker=$!
pids+=("$checker")
"$MP" produce --history "$HISTORY" --history-tps "$HISTORY_TPS" --duration "$DURATION" --tps "$TPS" \
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
echo "== validator: this run's bars, window features and indicators recomputed from the archive"
"$MP" validate --start "${since}ms" --end "${until}ms"

trap - EXIT
echo
echo "The stack keeps running: \`$MP local status\`, \`$MP local down\` to stop it."
if [ -f "$OUT/dashboard.pid" ]; then
    echo "The dashboard keeps running at $dashboard_url: \`kill $(cat "$OUT/dashboard.pid")\` stops it."
fi
echo "This run's hot stores: PostgreSQL database $MARKETPIPE_POSTGRES__DATABASE and" \
    "$MARKETPIPE_FEATURES__DUCKDB_PATH (\`MARKETPIPE_POSTGRES__DATABASE=$MARKETPIPE_POSTGRES__DATABASE" \
    "$MP latest --sink postgres\`)."
