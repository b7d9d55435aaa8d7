#!/usr/bin/env bash
# Online backup of a 1M-event ledger (docs/BENCHMARKS.md §7): load a
# ledger, build its read model, serve it, back it up while simulate sends
# webhooks, check the backup and serve on it.
# Usage: scripts/bench-backup.sh [events]
set -euo pipefail
events=${1:-1000000}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/callledger" ./cmd/callledger
bin=$work/callledger
data=$work/data
echo "load $events events"; time "$bin" load --events "$events" --data-dir "$data" >/dev/null
echo "rebuild the read model"; time "$bin" rebuild --data-dir "$data" >/dev/null 2>&1
"$bin" serve --data-dir "$data" --http-addr 127.0.0.1:18080 --grpc-addr 127.0.0.1:19090 2>"$work/serve.log" &
until curl -fsS http://127.0.0.1:18080/readyz >/dev/null 2>&1; do sleep 0.2; done
"$bin" simulate --target http://127.0.0.1:18080 --data-dir "$data" --calls 2000 --concurrency 16 >"$work/simulate.log" 2>&1 &
sleep 2
echo "backup during simulate"; time "$bin" backup --addr 127.0.0.1:19090 --to "$work/backup"
wait %2 || { echo "simulate failed:"; cat "$work/simulate.log"; exit 1; }
du -sh --apparent-size "$work/backup" "$data"
kill %1; wait %1 || true
echo "check the backup"; time "$bin" check --data-dir "$work/backup" | head -3
"$bin" serve --data-dir "$work/backup" --http-addr 127.0.0.1:18081 --grpc-addr 127.0.0.1:19091 2>"$work/restored.log" &
start=$(date +%s.%N)
until curl -fsS http://127.0.0.1:18081/readyz >/dev/null 2>&1; do sleep 0.1; done
echo "serve on the backup: ready after $(echo "$(date +%s.%N) - $start" | bc) s"
