#!/usr/bin/env bash
# Webhook ingest benchmark (docs/BENCHMARKS.md). Usage: bench-ingest.sh [duration] [rate]
#   1. ceiling: wrk against a no-op Go HTTP server, same requests, same settings;
#   2. saturation: wrk against `callledger serve` (every 2xx fsync-durable);
#   3. fixed rate: <rate> requests/s, open loop (vegeta), latency percentiles and
#      the server's slow commits; RATE_RUNS=N repeats it on fresh ledgers.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20s}
RATE=${2:-5000}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
CALLS=${CALLS:-100000}
RATE_RUNS=${RATE_RUNS:-1} # fixed-rate runs, each on a fresh ledger: the tail varies from run to run
WORK=${WORK:-$(mktemp -d)}
TOKEN=bench-token
PORT=18080

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; else
    echo "wrk is required: apt-get install wrk" >&2; exit 1; fi
fi

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr), $(go version | cut -d' ' -f3)"
go build -o "$WORK/callledger" ./cmd/callledger
go build -o "$WORK/ingestbench" ./scripts/ingestbench
"$WORK/ingestbench" gen -out "$WORK/reqs" -calls "$CALLS" -threads "$THREADS" -token "$TOKEN" \
  -public-url "http://127.0.0.1:$PORT" -host "127.0.0.1:$PORT"

wait_up() { for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "server did not start" >&2; return 1; }

run_wrk() { # conns duration
  wrk -t"$THREADS" -c"$1" -d"$2" --latency -s scripts/wrk-ingest.lua "http://127.0.0.1:$PORT" -- "$WORK/reqs" | grep '^RESULT'
}

start_ledger() {
  rm -rf "$WORK/data"
  TWILIO_AUTH_TOKEN=$TOKEN "$WORK/callledger" serve --data-dir "$WORK/data" --http-addr "127.0.0.1:$PORT" \
    --grpc-addr 127.0.0.1:0 --public-url "http://127.0.0.1:$PORT" --log-level warn &
  LEDGER=$!
  wait_up
}
stop_ledger() { kill -TERM "$LEDGER"; wait "$LEDGER" || true; }

echo "## ceiling: no-op HTTP server"
"$WORK/ingestbench" noop -addr "127.0.0.1:$PORT" & NOOP=$!
wait_up
run_wrk "$CONNS" "$DURATION"
kill "$NOOP"; wait "$NOOP" 2>/dev/null || true

echo "## saturation: callledger serve, embedded store, fsync per group commit"
start_ledger
run_wrk "$CONNS" "$DURATION"
stop_ledger
echo "unique events stored: $("$WORK/ingestbench" count -data-dir "$WORK/data")"

for run in $(seq "$RATE_RUNS"); do
  echo "## fixed rate: $RATE requests/s, open loop (run $run of $RATE_RUNS)"
  start_ledger
  "$WORK/ingestbench" rate -target "http://127.0.0.1:$PORT" -public-url "http://127.0.0.1:$PORT" -token "$TOKEN" \
    -rate "$RATE" -duration "$DURATION" -calls "$CALLS"
  # The acknowledgement tail follows the slowest fsyncs: a stalled one holds
  # every webhook queued behind it. The server's commit histogram shows them.
  curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '
    /^callledger_store_commit_seconds_bucket\{le="0.01"\}/ {b10=$2}
    /^callledger_store_commit_seconds_bucket\{le="0.025"\}/ {b25=$2}
    /^callledger_store_commit_seconds_bucket\{le="0.1"\}/ {b100=$2}
    /^callledger_store_commit_seconds_sum/ {sum=$2}
    /^callledger_store_commit_seconds_count/ {n=$2}
    END {printf "COMMITS n=%d mean_ms=%.2f over_10ms=%d over_25ms=%d over_100ms=%d\n", n, n ? 1000*sum/n : 0, n-b10, n-b25, n-b100}'
  stop_ledger
  echo "unique events stored: $("$WORK/ingestbench" count -data-dir "$WORK/data")"
done
