#!/usr/bin/env bash
# End-to-end storage benchmark (issue 3, item 10) with the release binary:
#
#   1. generate N realistic sshd syslog lines from Loghub OpenSSH_2k (times,
#      hosts, pids, IPs, users and ports varied) into raw.log: the RAW BYTES;
#   2. start a node on a fresh data dir and time it to /ready; idle RSS;
#   3. ingest raw.log over HTTP (`secmon bench ingest --line-format syslog`:
#      each line parsed as the syslog source does, sent as its event) and wait
#      until every event is searchable; RSS under load sampled meanwhile;
#   4. stop it (SIGTERM), restart it on the full store: start-up time to
#      /ready = 200 and idle RSS;
#   5. `secmon bench search --uncached` (term, word, phrase, time range,
#      eventStats, eventHistogram; no answer from the search cache), RSS
#      sampled meanwhile;
#   6. stop it; bytes on disk of secmon.redb and index/ against raw bytes.
#
# Prints a summary table; the JSON reports stay in the work dir.
#
#   BENCH_EVENTS=10000000   events (lines) to generate and load
#   BENCH_DIR=/tmp/...      work dir (default: a new temp dir; removed at the
#                           end unless BENCH_KEEP=1)
#   BENCH_RAW=path          reuse an already generated raw log
#   BENCH_CONCURRENCY=4 BENCH_BATCH=5000           ingest clients, lines per request
#   BENCH_SEARCH_REQUESTS=200 BENCH_SEARCH_CONCURRENCY=4
#   SECMON_BIN=target/release/secmon
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh
EVENTS=${BENCH_EVENTS:-10000000}
BIN=${SECMON_BIN:-target/release/secmon}
SOURCE=${BENCH_SOURCE:-../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log}
CONCURRENCY=${BENCH_CONCURRENCY:-4}
BATCH=${BENCH_BATCH:-5000}
REQUESTS=${BENCH_SEARCH_REQUESTS:-200}
SEARCH_CONCURRENCY=${BENCH_SEARCH_CONCURRENCY:-4}
KEEP=${BENCH_KEEP:-0}

[[ -x $BIN ]] || { echo "no $BIN: cargo build --release first (or set SECMON_BIN)" >&2; exit 2; }
BIN=$(realpath "$BIN")
if [[ -n ${BENCH_DIR:-} ]]; then
    WORK=$BENCH_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/secmon-bench.XXXXXX)
fi
DATA=$WORK/data
rm -rf "$DATA"
# The shipped configuration, with the API's rate limits out of the way: the
# search benchmark asks faster than an analyst.
CONFIG_DIR=$WORK/config
bench_config "$CONFIG_DIR"

PID=
SAMPLER=
cleanup() {
    [[ -n $SAMPLER ]] && kill "$SAMPLER" 2>/dev/null || true
    if [[ -n $PID ]] && alive "$PID"; then
        kill -TERM "$PID" 2>/dev/null || true
        for _ in $(seq 100); do alive "$PID" || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    if [[ $KEEP != 1 ]]; then
        rm -rf "$DATA"
        if [[ -z ${BENCH_DIR:-} ]]; then rm -rf "$WORK"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now_ns() { date +%s%N; }
# Running (a child that exited stays a zombie until waited for: not alive).
alive() { local s; s=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null); [[ -n $s && $s != Z ]]; }
log() { echo "[$(date +%T)] $*" >&2; }
kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
rss_mb() { echo "scale=1; $1 / 1024" | bc; }

# Starts the node on $DATA; sets PID, API, HEALTH and START_MS (spawn to /ready = 200).
start_node() {
    rm -f "$DATA/ports.json"
    mkdir -p "$DATA"
    # The API takes no request without a credential: a fresh data dir gets an
    # admin API key, made offline before the node starts.
    if [[ ! -f $DATA/secmon.redb ]]; then
        "$BIN" apikey create bench --role admin --data-dir "$DATA" >"$WORK/apikey.json"
        SECMON_TOKEN=$(jq -r .key "$WORK/apikey.json")
        export SECMON_TOKEN
    fi
    local t0 code
    t0=$(now_ns)
    GLIBC_TUNABLES=$NODE_TUNABLES ENVIRONMENT=development SECMON_DATA_DIR=$DATA BIND_ADDRESS=127.0.0.1 \
        GRAPHQL_PORT=0 WEBSOCKET_PORT=0 METRICS_PORT=0 HEALTH_PORT=0 \
        SYSLOG_UDP_PORT='' SYSLOG_TCP_PORT='' SYSLOG_TLS_PORT='' RUST_LOG=warn \
        "$BIN" serve --config "$CONFIG_DIR" >>"$WORK/node.log" 2>&1 &
    PID=$!
    while :; do
        alive "$PID" || { echo "the node died; see $WORK/node.log" >&2; tail -20 "$WORK/node.log" >&2; exit 1; }
        if [[ -s $DATA/ports.json ]]; then
            HEALTH=$(jq -r .health "$DATA/ports.json" 2>/dev/null || true)
            if [[ -n $HEALTH && $HEALTH != null ]]; then
                code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HEALTH/ready" || true)
                [[ $code == 200 ]] && break
            fi
        fi
        if (( ($(now_ns) - t0) > 300000000000 )); then echo "not ready within 300 s" >&2; exit 1; fi
        sleep 0.005
    done
    START_MS=$(( ($(now_ns) - t0) / 1000000 ))
    API=http://127.0.0.1:$(jq -r .graphql "$DATA/ports.json")
}

stop_node() {
    local t0
    t0=$(now_ns)
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null || true
    STOP_MS=$(( ($(now_ns) - t0) / 1000000 ))
    PID=
}

# Samples VmRSS of $PID every 0.25 s into $1, its anonymous part (heap
# and stacks) into $1.anon and its file-backed part (the binary and the
# index files mapped in) into $1.file (one value per line, kB).
start_sampler() {
    local out=$1 pid=$PID
    : >"$out"
    : >"$out.anon"
    : >"$out.file"
    ( while alive "$pid"; do kb "$pid" VmRSS >>"$out"; kb "$pid" RssAnon >>"$out.anon"; kb "$pid" RssFile >>"$out.file"; sleep 0.25; done ) &
    SAMPLER=$!
}
stop_sampler() { kill "$SAMPLER" 2>/dev/null || true; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=; }
max_of() { sort -n "$1" | tail -1; }
p50_of() { sort -n "$1" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# 1. raw log
if [[ -n ${BENCH_RAW:-} ]]; then
    RAW=$BENCH_RAW
else
    RAW=$WORK/raw.log
    log "generating $EVENTS lines into $RAW"
    "$BIN" bench generate --source "$SOURCE" --events "$EVENTS" --out "$RAW" >"$WORK/generate.json"
fi
RAW_BYTES=$(stat -c %s "$RAW")
RAW_LINES=$(wc -l <"$RAW")
log "raw: $RAW_LINES lines, $RAW_BYTES bytes"

# 2. fresh node
start_node
FRESH_START_MS=$START_MS
sleep 2
FRESH_RSS=$(kb "$PID" VmRSS)
log "fresh node ready in $FRESH_START_MS ms, idle RSS $FRESH_RSS kB ($API)"

# 3. ingest
start_sampler "$WORK/rss-ingest.txt"
log "ingesting (batch $BATCH, $CONCURRENCY clients)"
"$BIN" bench ingest --url "$API" --from-file "$RAW" --line-format syslog --year 2025 \
    --batch "$BATCH" --concurrency "$CONCURRENCY" --index-timeout-secs 7200 >"$WORK/ingest.json"
stop_sampler
INGEST_RSS_MAX=$(max_of "$WORK/rss-ingest.txt")
INGEST_RSS_P50=$(p50_of "$WORK/rss-ingest.txt")
INGEST_ANON_MAX=$(max_of "$WORK/rss-ingest.txt.anon")
INGEST_ANON_P50=$(p50_of "$WORK/rss-ingest.txt.anon")
INGEST_FILE_MAX=$(max_of "$WORK/rss-ingest.txt.file")
INGEST_HWM=$(kb "$PID" VmHWM)
log "ingested: $(jq -c '{events, committed_events_per_second, searchable_events_per_second, client_cpu_seconds}' "$WORK/ingest.json")"
NODE_CPU_INGEST=$(awk '{ print ($14 + $15) / 100 }' "/proc/$PID/stat")
sleep 2
AFTER_INGEST_RSS=$(kb "$PID" VmRSS)
du_b() { du -sb "$1" | cut -f1; }
REDB_AFTER_INGEST=$(du_b "$DATA/secmon.redb")
INDEX_AFTER_INGEST=$(du_b "$DATA/index")

# 4. restart on the full store
stop_node
FIRST_STOP_MS=$STOP_MS
log "stopped in $STOP_MS ms; restarting"
start_node
RESTART_MS=$START_MS
sleep 2
IDLE_RSS=$(kb "$PID" VmRSS)
IDLE_ANON=$(kb "$PID" RssAnon)
IDLE_FILE=$(kb "$PID" RssFile)
log "restarted in $RESTART_MS ms, idle RSS $IDLE_RSS kB (anon $IDLE_ANON, file $IDLE_FILE)"

# 5. search
start_sampler "$WORK/rss-search.txt"
log "searching ($REQUESTS requests per kind, $SEARCH_CONCURRENCY clients)"
"$BIN" bench search --uncached --url "$API" --requests "$REQUESTS" --concurrency "$SEARCH_CONCURRENCY" >"$WORK/search.json"
stop_sampler
SEARCH_RSS_MAX=$(max_of "$WORK/rss-search.txt")
SEARCH_ANON=$(kb "$PID" RssAnon)
stop_node

# 6. disk, after a clean stop
REDB=$(du_b "$DATA/secmon.redb")
INDEX=$(du_b "$DATA/index")
REDB_ALLOC=$(du -s --block-size=1 "$DATA/secmon.redb" | cut -f1)
INDEX_ALLOC=$(du -s --block-size=1 "$DATA/index" | cut -f1)
SEGMENTS=$(find "$DATA/index" -name '*.idx' | wc -l)

N=$(jq .events "$WORK/ingest.json")
ratio() { echo "scale=3; $1 / $2" | bc; }
per_event() { echo "scale=1; $1 / $N" | bc; }
{
    echo
    echo "secmon storage benchmark: $N events, $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    printf '%-44s %18s   %s\n' measure value target
    printf '%-44s %18s   %s\n' -------------------------------------------- ------------------ ------
    printf '%-44s %18s   %s\n' "raw log" "$RAW_BYTES B" "($(per_event "$RAW_BYTES") B/event)"
    jq -r '"ingest committed (HTTP, acked)\t\(.committed_events_per_second|floor) ev/s\t≥ 100000 ev/s (store+index)",
           "ingest searchable (indexLag 0)\t\(.searchable_events_per_second|floor) ev/s\t≥ 100000 ev/s (store+index)",
           "ingest request p50 / p99\t\(.request_p50_ms|floor) / \(.request_p99_ms|floor) ms\t",
           "ingest client CPU (same machine)\t\(.client_cpu_seconds) s of \(.searchable_seconds|floor) s\t"' "$WORK/ingest.json" |
        awk -F'\t' '{ printf "%-44s %18s   %s\n", $1, $2, $3 }'
    printf '%-44s %18s   %s\n' "node CPU during ingest (user+sys)" "$NODE_CPU_INGEST s" ""
    printf '%-44s %18s   %s\n' "secmon.redb" "$REDB B" "$(ratio "$REDB" "$RAW_BYTES")× raw, $(per_event "$REDB") B/event"
    printf '%-44s %18s   %s\n' "index/ ($SEGMENTS segments)" "$INDEX B" "$(ratio "$INDEX" "$RAW_BYTES")× raw, $(per_event "$INDEX") B/event"
    printf '%-44s %18s   %s\n' "disk total (redb + index)" "$((REDB + INDEX)) B" "$(ratio $((REDB + INDEX)) "$RAW_BYTES")× raw (target ≤ 0.6×)"
    printf '%-44s %18s   %s\n' "disk total, allocated blocks" "$((REDB_ALLOC + INDEX_ALLOC)) B" "$(ratio $((REDB_ALLOC + INDEX_ALLOC)) "$RAW_BYTES")× raw"
    printf '%-44s %18s   %s\n' "start-up to /ready, empty data dir" "$FRESH_START_MS ms" ""
    printf '%-44s %18s   %s\n' "start-up to /ready, $N events" "$RESTART_MS ms" "≤ 1000 ms"
    printf '%-44s %18s   %s\n' "RSS idle, empty" "$(rss_mb "$FRESH_RSS") MB" ""
    printf '%-44s %18s   %s\n' "RSS idle after restart (anon + file)" "$(rss_mb "$IDLE_RSS") MB" "≤ 32 MB ($(rss_mb "$IDLE_ANON") anon + $(rss_mb "$IDLE_FILE") file)"
    printf '%-44s %18s   %s\n' "RSS under ingest, median / max sampled" "$(rss_mb "$INGEST_RSS_P50") / $(rss_mb "$INGEST_RSS_MAX") MB" "peak (VmHWM) $(rss_mb "$INGEST_HWM") MB"
    printf '%-44s %18s   %s\n' "  of it anonymous (heap), median / max" "$(rss_mb "$INGEST_ANON_P50") / $(rss_mb "$INGEST_ANON_MAX") MB" "file-backed at most $(rss_mb "$INGEST_FILE_MAX") MB (the binary, index files mapped in)"
    printf '%-44s %18s   %s\n' "RSS right after ingest" "$(rss_mb "$AFTER_INGEST_RSS") MB" ""
    printf '%-44s %18s   %s\n' "RSS under search, max sampled" "$(rss_mb "$SEARCH_RSS_MAX") MB" "anon after: $(rss_mb "$SEARCH_ANON") MB"
    echo
    printf '%-10s %12s %9s %9s %9s %9s %9s   %s\n' search matched p50_ms p90_ms p99_ms max_ms req/s target
    jq -r '.kinds[] | [.kind, .matched, .p50_ms, .p90_ms, .p99_ms, .max_ms, .requests_per_second] | @tsv' "$WORK/search.json" |
        while IFS=$'\t' read -r kind matched p50 p90 p99 max rps; do
            case $kind in stats|histogram) target="p99 ≤ 100 ms" ;; term) target="p99 ≤ 20 ms" ;; phrase) target="p99 ≤ 50 ms" ;; *) target="" ;; esac
            printf '%-10s %12s %9.1f %9.1f %9.1f %9.1f %9.1f   %s\n' "$kind" "$matched" "$p50" "$p90" "$p99" "$max" "$rps" "$target"
        done
    echo
    echo "search: $REQUESTS requests per kind, $SEARCH_CONCURRENCY clients, none answered from the search cache; queries in $WORK/search.json"
    echo "after ingest, before restart: secmon.redb $REDB_AFTER_INGEST B, index/ $INDEX_AFTER_INGEST B; SIGTERM to exit: $FIRST_STOP_MS ms after ingest, $STOP_MS ms after search"
} | tee "$WORK/summary.txt"
[[ $KEEP == 1 ]] && echo "reports in $WORK" >&2
exit 0
