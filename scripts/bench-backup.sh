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
# serve on free ports; its "callledger serving" line says which.
serve() { # data-dir log
	"$bin" serve --data-dir "$1" --http-addr 127.0.0.1:0 --grpc-addr 127.0.0.1:0 2>"$2" &
	until grep -q 'msg="callledger serving"' "$2"; do sleep 0.1; done
	http=$(sed -n 's/.*msg="callledger serving" http=\([^ ]*\) grpc=\([^ ]*\).*/\1/p' "$2")
	grpc=$(sed -n 's/.*msg="callledger serving" http=\([^ ]*\) grpc=\([^ ]*\).*/\2/p' "$2")
}
serve "$data" "$work/serve.log"
until curl -fsS "http://$http/readyz" >/dev/null 2>&1; do sleep 0.2; done
"$bin" simulate --target "http://$http" --data-dir "$data" --calls 2000 --concurrency 16 >"$work/simulate.log" 2>&1 &
sleep 2
echo "backup during simulate"; time "$bin" backup --addr "$grpc" --to "$work/backup"
wait %2 || { echo "simulate failed:"; cat "$work/simulate.log"; exit 1; }
du -sh --apparent-size "$work/backup" "$data"
kill %1; wait %1 || true
http= grpc=
echo "check the backup"; time "$bin" check --data-dir "$work/backup" | head -3
start=$(date +%s.%N)
serve "$work/backup" "$work/restored.log"
until curl -fsS "http://$http/readyz" >/dev/null 2>&1; do sleep 0.1; done
echo "serve on the backup: ready after $(echo "$(date +%s.%N) - $start" | bc) s"
