#!/usr/bin/env bash
# Rebuild benchmark (docs/BENCHMARKS.md §3, §9): for each size, load a
# ledger of that many events of realistic call flows with `callledger load`
# (once; cached under $BENCH_REBUILD_DIR), then rebuild its call-state
# projection from zero with `callledger rebuild`, reporting events/s, CPU
# per event and peak RSS.
#
#   scripts/bench-rebuild.sh [EVENTS...]     default: 1000000 3000000 10000000
#
# BENCH_REBUILD_BASE=<git revision> also builds that revision and runs it
# and the working tree alternately on the same ledger (base, new, base,
# new, ...: BENCH_REBUILD_REPEAT pairs, default 1), printing the ratios
# new/base of each pair: on a shared machine, only ratios taken in one run
# mean anything. A ledger takes about 320 bytes of disk per event.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_REBUILD_DIR:-.tmp/bench-rebuild}
base=${BENCH_REBUILD_BASE:-}
repeat=${BENCH_REBUILD_REPEAT:-1}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 3000000 10000000)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
go build -o "$dir/callledger" ./cmd/callledger
bins=(callledger)
if [ -n "$base" ]; then
	src="$dir/base-src"
	rm -rf "$src" && mkdir -p "$src"
	git archive "$base" | tar -x -C "$src"
	(cd "$src" && go build -o "$dir/callledger-base" ./cmd/callledger)
	rm -rf "$src"
	bins=(callledger-base callledger)
else
	repeat=1
fi
echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), go $(go env GOVERSION)${base:+, base $base}"

# run BIN DIR: one rebuild; prints a line and sets cpu, wall, rss.
run() {
	local bin=$1 d=$2 load out events user sys
	load=$(cut -d' ' -f1 /proc/loadavg)
	out=$(/usr/bin/time -f '%e %U %S %M' -o "$dir/time" "$dir/$bin" rebuild --data-dir "$d" --log-level warn)
	events=$(sed -n 's/^rebuilt [^:]*: \([0-9]*\) events.*/\1/p' <<<"$out")
	read -r wall user sys rss < "$dir/time"
	cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}')
	awk -v b="$bin" -v e="$events" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v l="$load" 'BEGIN {
		printf "  %-15s %d events: wall %.1f s (%.0f events/s), CPU %.1f s user + %.1f s sys (%.2f us/event), peak RSS %d MiB, load %s\n",
			b, e, w, e / w, u, s, (u + s) * 1e6 / e, r / 1024, l }'
}

for n in "${sizes[@]}"; do
	d="$dir/$n"
	if [ ! -f "$d/loaded" ]; then
		rm -rf "$d"
		"$dir/callledger" load --data-dir "$d" --events "$n" --log-level warn
		touch "$d/loaded"
	fi
	echo "$n events ($(du -sh "$d/ledger" | cut -f1) of ledger):"
	for ((i = 0; i < repeat; i++)); do
		for bin in "${bins[@]}"; do
			run "$bin" "$d"
			if [ "$bin" = callledger-base ]; then
				bcpu=$cpu bwall=$wall brss=$rss
			fi
		done
		if [ -n "$base" ]; then
			awk -v c="$cpu" -v bc="$bcpu" -v w="$wall" -v bw="$bwall" -v r="$rss" -v br="$brss" 'BEGIN {
				printf "  ratio new/base: CPU %.3f, wall %.3f, peak RSS %.3f\n", c / bc, w / bw, r / br }'
		fi
	done
done
