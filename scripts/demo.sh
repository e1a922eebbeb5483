#!/usr/bin/env bash
# `make demo`: the local pipeline on embedded defaults. Starts the local stack (idempotent),
# produces a few seconds of synthetic ticks with a sprinkle of injected faults, and reads back
# what reached the broker.
set -euo pipefail
MP=${MP:-.venv/bin/marketpipe}
DURATION=${DEMO_DURATION:-5}
TPS=${DEMO_TPS:-20000}

echo "== local stack"
"$MP" local up
since=$(date +%s%3N)

echo
echo "== producing ${DURATION}s of synthetic ticks at ${TPS}/s"
"$MP" produce --duration "$DURATION" --tps "$TPS" --symbols AAPL:189.5,MSFT:415,NVDA:118,ETH-USD:3150,BTC-USD:64000 --volatility 0.6 \
    --jitter-ms 2 --malformed 0.001 --crossed 0.001 --duplicate 0.001 --out-of-order 0.001

echo
echo "== read back from the broker (this run only)"
"$MP" summary --since "$since"

echo
echo "The stack keeps running: \`$MP local status\`, \`$MP local down\` to stop it."
