#!/usr/bin/env bash
# Baseline against current code, interleaved in one run (docs/BENCHMARKS.md,
# "Performance round 2"). Usage: bench-compare.sh ingest|tail|getcall|getcall-pinned [ref...]
# Each ref (default main; - for none) is built from git and run beside the working tree.
#   ingest:  per round, wrk against the no-op ceiling, then `serve --role all`
#            built from each ref and from the working tree (saturation, every
#            2xx fsync-durable); prints each one's share of the ceiling.
#   tail:    per round and binary, a fresh data directory and a fresh start,
#            then as soon as /readyz answers: RATE webhooks/s open loop for
#            TAIL_DURATION (first second included; ingestbench rate), and again
#            from a fresh start the vegeta command (v12.12.0, installed here)
#            as a separate process: -rate=RATE/s -duration=VEGETA_DURATION
#            -keepalive over pre-signed unique webhooks.
#   getcall: BenchmarkGetCallAtRate on GETCALL_SIZE calls at GETCALL_RATE/s,
#            open loop, with serve's collector setting (GOGC=400); then the
#            freshness: BenchmarkAckToVisible (webhook 2xx -> visible).
#   getcall-pinned: GetCall at GETCALL_RATE/s open loop for GETCALL_DURATION
#            against `serve` in a process of its own, pinned to SERVER_CPUS
#            (taskset; default CPU 0), from `ingestbench getcall` pinned to
#            CLIENT_CPUS (default CPU 1), GETCALL_CALLERS callers: the
#            latencies are the server's, not those of a client fighting it
#            for the cores. The read model of GETCALL_SIZE two-leg calls is
#            written once per format (ingestbench readmodel, the code of
#            BenchmarkGetCallAtRate's) and copied into each run's fresh data
#            directory; serve keeps its own collector setting (GOGC=400
#            unless GOGC is set). Prints the client's RESULT line (sent/s,
#            p50 p90 p99 p99.9 max, errors, late p99, client CPU per call)
#            and the server's CPU per call (user+sys from /proc/PID/stat).
#            The client is the working tree's ingestbench for every binary.
# Two binaries built from two commits, run A B A B: on a shared machine only
# the ratios within one run mean much. Each line notes the load average.
# VARIANTS="--seal=false" (variants separated by spaces, a variant's flags
# by commas) adds runs of the working tree's binary with those serve flags,
# named new[FLAGS]: one build measured with and without a feature in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: bench-compare.sh ingest|tail|getcall|getcall-pinned [ref...]}
shift
REFS=("${@:-main}")
[ "${REFS[0]}" = - ] && REFS=() # the working tree (and its VARIANTS) alone
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
CALLS=${CALLS:-70000}
RATE=${RATE:-5000}
TAIL_DURATION=${TAIL_DURATION:-60s}
VEGETA_DURATION=${VEGETA_DURATION:-30s}
GETCALL_SIZE=${GETCALL_SIZE:-1000000}
GETCALL_RATE=${GETCALL_RATE:-10000}
GETCALL_N=${GETCALL_N:-300000}
GETCALL_DURATION=${GETCALL_DURATION:-30s}
GETCALL_CALLERS=${GETCALL_CALLERS:-256}
SERVER_CPUS=${SERVER_CPUS:-0}
CLIENT_CPUS=${CLIENT_CPUS:-1}
WORK=${WORK:-$(mktemp -d)}
TOKEN=bench-token
PORT=18080
URL="http://127.0.0.1:$PORT"
GRPC_ADDR=127.0.0.1:0 # getcall-pinned: a port the client can find
SERVER_PIN=()         # getcall-pinned: taskset -c SERVER_CPUS
SEED=                 # getcall-pinned: the data directory each run starts from (a copy)

note() { echo "# $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg): $*"; }

# build <name> <ref|.>: callledger, ingestbench and the e2e test binary of a
# commit (from `git archive`, so the repository is left as it is) or of the
# working tree.
build() {
  local name=$1 ref=$2 src
  if [ "$ref" = . ]; then src=.; else
    # -trimpath and one directory for every ref: the build cache reuses what they share.
    src="$WORK/src"; rm -rf "$src"; mkdir -p "$src"
    git archive "$ref" | tar -x -C "$src"
  fi
  (cd "$src" && go build -trimpath -o "$WORK/$name/callledger" ./cmd/callledger &&
    go build -trimpath -o "$WORK/$name/ingestbench" ./scripts/ingestbench &&
    if [ "$MODE" = getcall ]; then go test -trimpath -c -o "$WORK/$name/e2e.test" ./e2e; fi)
}

wait_ready() { # polls /readyz every 10 ms: the load starts the moment it says ready
  for _ in $(seq 3000); do curl -fsS "$URL/readyz" >/dev/null 2>&1 && return 0; sleep 0.01; done
  echo "server did not get ready" >&2; return 1
}

start() { # <name>: a binary's directory, or new[FLAGS] (VARIANTS)
  local bin=${1%%[*} flags=()
  if [ "$bin" != "$1" ]; then local f=${1#*[}; f=${f%]}; IFS=, read -r -a flags <<<"$f"; fi
  rm -rf "$WORK/data"
  if [ -n "$SEED" ]; then cp -a "$SEED" "$WORK/data"; fi
  sync # the previous run's writes and deletions must not land on this one's fsyncs
  TWILIO_AUTH_TOKEN=$TOKEN "${SERVER_PIN[@]}" "$WORK/$bin/callledger" serve --data-dir "$WORK/data" --http-addr "127.0.0.1:$PORT" \
    --grpc-addr "$GRPC_ADDR" --api-addr "" --public-url "$URL" --log-level warn "${flags[@]}" &
  SERVER=$!
  wait_ready
}
stop() { kill -TERM "$SERVER"; wait "$SERVER" || true; }
# order <round>: the binaries in the order of that round, reversed every
# other round, so that none always runs right after another.
order() { if [ $(($1 % 2)) = 1 ]; then echo "${NAMES[@]}"; else printf '%s\n' "${NAMES[@]}" | tac | tr '\n' ' '; fi; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user+system, in clock ticks

commits() { # the server's commit histogram: how many took over 10, 25, 100 ms
  curl -fsS "$URL/metrics" | awk '
    /^callledger_store_commit_seconds_bucket\{le="0.01"\}/ {b10=$2}
    /^callledger_store_commit_seconds_bucket\{le="0.025"\}/ {b25=$2}
    /^callledger_store_commit_seconds_bucket\{le="0.1"\}/ {b100=$2}
    /^callledger_store_commit_seconds_sum/ {sum=$2}
    /^callledger_store_commit_seconds_count/ {n=$2}
    END {printf "COMMITS n=%d mean_ms=%.2f over_10ms=%d over_25ms=%d over_100ms=%d\n", n, n ? 1000*sum/n : 0, n-b10, n-b25, n-b100}'
}

main() {
echo "# machine: $(nproc) cores, $(uname -sr), $(go version | cut -d' ' -f3)"
NAMES=()
for ref in "${REFS[@]}"; do
  name="ref-$(git rev-parse --short "$ref")"
  echo "# $name: $ref"
  build "$name" "$ref"; NAMES+=("$name")
done
echo "# new: the working tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' with changes'))"
build new .; NAMES+=(new)
for v in ${VARIANTS:-}; do
  NAMES+=("new[$v]"); echo "# new[$v]: the working tree with serve ${v//,/ }"
done

case "$MODE" in
ingest)
  command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
  "$WORK/new/ingestbench" gen -out "$WORK/reqs" -calls "$CALLS" -threads "$THREADS" -token "$TOKEN" -public-url "$URL" -host "127.0.0.1:$PORT"
  wrk_run() { wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s scripts/wrk-ingest.lua "$URL" -- "$WORK/reqs" | grep '^RESULT'; }
  for round in $(seq "$ROUNDS"); do
    note "round $round: ceiling (no-op HTTP server)"
    "$WORK/new/ingestbench" noop -addr "127.0.0.1:$PORT" & NOOP=$!
    for _ in $(seq 100); do curl -fsS "$URL/" >/dev/null 2>&1 && break; sleep 0.05; done
    ceiling=$(wrk_run); echo "ceiling $ceiling"
    kill "$NOOP"; wait "$NOOP" 2>/dev/null || true
    for name in $(order "$round"); do
      note "round $round: $name, saturation"
      start "$name"; t0=$(cpu_ticks "$SERVER"); r=$(wrk_run); t1=$(cpu_ticks "$SERVER"); stop
      # Server CPU per webhook moves far less with the machine's other load than throughput does.
      echo "$name $r $(awk -v a="$r" -v c="$ceiling" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" 'BEGIN{
        match(a,/requests=[0-9]+/); n=substr(a,RSTART+9,RLENGTH-9)
        match(a,/rps=[0-9]+/); x=substr(a,RSTART+4,RLENGTH-4); match(c,/rps=[0-9]+/); y=substr(c,RSTART+4,RLENGTH-4)
        printf "of_ceiling=%.1f%% server_cpu_us_per_webhook=%.1f", 100*x/y, 1e6*ticks/hz/n}')"
    done
  done
  ;;
tail)
  mkdir -p "$WORK/bin"
  GOBIN="$WORK/bin" go install github.com/tsenart/vegeta/v12@v12.12.0
  "$WORK/new/ingestbench" targets -out "$WORK/targets.json" -calls "$CALLS" -token "$TOKEN" -target "$URL"
  for round in $(seq "$ROUNDS"); do
    for name in $(order "$round"); do
      note "round $round: $name, $RATE/s open loop for $TAIL_DURATION from a fresh start (ingestbench rate)"
      start "$name"; t0=$(cpu_ticks "$SERVER")
      "$WORK/${name%%[*}/ingestbench" rate -target "$URL" -public-url "$URL" -token "$TOKEN" \
        -rate "$RATE" -duration "$TAIL_DURATION" -calls "$CALLS"
      echo "SERVER_CPU $(( ($(cpu_ticks "$SERVER") - t0) * 1000 / $(getconf CLK_TCK) )) ms"
      commits; stop
      note "round $round: $name, vegeta attack -rate=$RATE/s -duration=$VEGETA_DURATION -keepalive from a fresh start"
      start "$name"
      "$WORK/bin/vegeta" attack -format=json -targets="$WORK/targets.json" -rate="$RATE/s" -duration="$VEGETA_DURATION" -keepalive \
        >"$WORK/vegeta-$name-$round.bin"
      commits; stop
      "$WORK/bin/vegeta" report <"$WORK/vegeta-$name-$round.bin"
      "$WORK/bin/vegeta" report -type='hist[0,2ms,5ms,10ms,25ms,50ms,100ms,1s]' <"$WORK/vegeta-$name-$round.bin"
      rm -f "$WORK/vegeta-$name-$round.bin"
    done
  done
  ;;
getcall)
  for round in $(seq "$ROUNDS"); do
    for name in $(order "$round"); do
      note "round $round: $name, GetCall on $GETCALL_SIZE calls at $GETCALL_RATE/s open loop"
      GOGC=400 "$WORK/$name/e2e.test" -test.run='^$' -test.bench=BenchmarkGetCallAtRate -test.benchtime="${GETCALL_N}x" \
        -test.timeout=30m -getcall.sizes="$GETCALL_SIZE" -getcall.rates="$GETCALL_RATE" | grep -E 'Benchmark|ns/op'
      note "round $round: $name, webhook acknowledged -> visible (GetCall with min_position, WatchCalls)"
      "$WORK/$name/e2e.test" -test.run='^$' -test.bench=BenchmarkAckToVisible -test.benchtime=5000x | grep -E 'Benchmark|ns/op'
    done
  done
  ;;
getcall-pinned)
  [ "$(nproc)" -gt 1 ] || { echo "getcall-pinned needs two cores: one for the server, one for the client" >&2; exit 1; }
  GRPC_ADDR=127.0.0.1:$((PORT + 1010)); SERVER_PIN=(taskset -c "$SERVER_CPUS")
  declare -A SEEDS # read model format -> its data directory, written once
  for name in "${NAMES[@]}"; do
    bin=${name%%[*} prep="$WORK/${name%%[*}/ingestbench"
    if ! fmt=$("$prep" readmodel -version 2>/dev/null); then
      # A commit from before `ingestbench readmodel`: the working tree's
      # format is assumed, and getcall's first call says if it is not.
      prep="$WORK/new/ingestbench"; fmt=$("$prep" readmodel -version)
      echo "# $name: no ingestbench readmodel; its server gets the read model $fmt"
    fi
    SEEDS[$bin]="$WORK/getcall-$fmt"
    if [ ! -d "$WORK/getcall-$fmt" ]; then
      note "read model $fmt of $GETCALL_SIZE calls"
      "$prep" readmodel -data-dir "$WORK/getcall-$fmt" -calls "$GETCALL_SIZE" -sids-out "$WORK/getcall.sids"
    fi
  done
  for round in $(seq "$ROUNDS"); do
    for name in $(order "$round"); do
      note "round $round: $name, GetCall on $GETCALL_SIZE calls at $GETCALL_RATE/s open loop for $GETCALL_DURATION, server on CPU $SERVER_CPUS, client on CPU $CLIENT_CPUS"
      SEED=${SEEDS[${name%%[*}]}; start "$name"; t0=$(cpu_ticks "$SERVER")
      r=$(taskset -c "$CLIENT_CPUS" "$WORK/new/ingestbench" getcall -addr "$GRPC_ADDR" -data-dir "$WORK/data" \
        -sids "$WORK/getcall.sids" -legs 2 -rate "$GETCALL_RATE" -duration "$GETCALL_DURATION" -callers "$GETCALL_CALLERS") ||
        { stop; exit 1; }
      t1=$(cpu_ticks "$SERVER"); stop; SEED=
      awk -v n="$name" '{print n, $0}' <<<"$r"
      echo "$name $(awk -v a="$(grep '^RESULT' <<<"$r")" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" 'BEGIN{
        match(a,/calls=[0-9]+/); n=substr(a,RSTART+6,RLENGTH-6)
        printf "server_cpu_us_per_call=%.1f (server CPU %d ms)", 1e6*ticks/hz/n, 1000*ticks/hz}')"
    done
  done
  ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
rm -rf "$WORK/data" "$WORK/reqs" "$WORK/targets.json" "$WORK/src" "$WORK"/getcall-* "$WORK/getcall.sids"
}

main "$@"; exit # the whole script is read before it runs: editing it during a run is safe
