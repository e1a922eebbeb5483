#!/usr/bin/env bash
# `make demo`: the local pipeline on embedded defaults. Starts the local stack (idempotent),
# runs the quality checker while the synthetic producer publishes a few seconds of ticks with
# injected faults, then shows where every message went.
set -euo pipefail
MP=${MP:-.venv/bin/marketpipe}
DURATION=${DEMO_DURATION:-5}
TPS=${DEMO_TPS:-20000}

echo "== local stack"
"$MP" local up
since=$(date +%s%3N)

echo
echo "== quality checker (background) + ${DURATION}s of synthetic ticks at ${TPS}/s with faults"
"$MP" quality --instance-id demo --until-idle 4 > .marketpipe/demo-quality.txt &
checker=$!
trap 'kill "$checker" 2>/dev/null || true' EXIT
"$MP" produce --duration "$DURATION" --tps "$TPS" \
    --symbols AAPL:189.5,MSFT:415,NVDA:118,ETH-USD:3150,BTC-USD:64000 --volatility 0.6 \
    --jitter-ms 2 --malformed 0.002 --crossed 0.002 --duplicate 0.002 --out-of-order 0.002
wait "$checker"
trap - EXIT

echo
echo "== what the checker did (every message accounted for)"
cat .marketpipe/demo-quality.txt

echo
echo "== ticks.valid, this run"
"$MP" summary --topic ticks.valid --since "$since"

echo
echo "== ticks.dlq, this run, by reason"
"$MP" summary --topic ticks.dlq --since "$since" | head -3

echo
echo "The stack keeps running: \`$MP local status\`, \`$MP local down\` to stop it."
