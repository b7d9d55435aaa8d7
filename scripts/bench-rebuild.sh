#!/usr/bin/env bash
# Rebuild benchmark (docs/BENCHMARKS.md): for each size, load a ledger of
# that many events of realistic call flows with `callledger load` (once;
# cached under $BENCH_REBUILD_DIR), then rebuild its call-state projection
# from zero with `callledger rebuild`, reporting events/s and peak RSS.
#
#   scripts/bench-rebuild.sh [EVENTS...]     default: 1000000 3000000 10000000
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_REBUILD_DIR:-.tmp/bench-rebuild}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 3000000 10000000)
mkdir -p "$dir"
go build -o "$dir/callledger" ./cmd/callledger
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), go $(go env GOVERSION)"
for n in "${sizes[@]}"; do
	d="$dir/$n"
	if [ ! -f "$d/loaded" ]; then
		rm -rf "$d"
		"$dir/callledger" load --data-dir "$d" --events "$n" --log-level warn
		touch "$d/loaded"
	fi
	/usr/bin/time -f '%e %U %S %M' -o "$dir/time" "$dir/callledger" rebuild --data-dir "$d" --log-level warn
	read -r wall user sys rss < "$dir/time"
	echo "$n: process wall ${wall}s, CPU ${user}s user + ${sys}s sys, peak RSS $((rss / 1024)) MiB"
done
