#!/usr/bin/env bash
# Event export and fleet search, end to end with the release binary
# (issue 19, item 7):
#
#   1. generate N realistic sshd syslog lines (`secmon bench generate`);
#   2. ingest them over syslog TCP (`secmon bench syslog --from-file`) into a
#      fresh node four times: no sink, the JetStream sink, the Parquet
#      archive (a directory), both. Committed and searchable events/s of
#      each, and how long the sinks took to hold every event after the last
#      was committed. The run without a sink is the baseline;
#   3. three nodes on this machine, one Postgres database of their own, each
#      ingesting the first FLEET_EVENTS lines; `secmon bench search` on the
#      first node alone, then with `--fleet` (all three, from the first):
#      p50/p99 of each, the ratio fleet / one node.
#
# JetStream is a nats-server of the script's own for each run (file storage
# in the work dir), so the machine's server keeps nothing of it. It runs on
# the same cores as the node: its CPU time is reported beside the node's. Prints a table; the
# JSON reports stay in the work dir.
#
#   BENCH_EVENTS=500000         lines for the ingest runs
#   BENCH_FLEET_EVENTS=300000   lines each fleet node holds
#   BENCH_DIR=/tmp/...          work dir (default: a new temp dir; removed at
#                               the end unless BENCH_KEEP=1)
#   BENCH_SEARCH_REQUESTS=200 BENCH_SEARCH_CONCURRENCY=4
#   SECMON_BIN=target/release/secmon  NATS_SERVER=nats-server
#   PGURL_ADMIN=postgres://root@127.0.0.1:5432/test  (creates and drops a database)
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh
EVENTS=${BENCH_EVENTS:-500000}
FLEET_EVENTS=${BENCH_FLEET_EVENTS:-300000}
BIN=${SECMON_BIN:-target/release/secmon}
SOURCE=${BENCH_SOURCE:-../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log}
REQUESTS=${BENCH_SEARCH_REQUESTS:-200}
SEARCH_CONCURRENCY=${BENCH_SEARCH_CONCURRENCY:-4}
KEEP=${BENCH_KEEP:-0}
PG_ADMIN=${PGURL_ADMIN:-postgres://root@127.0.0.1:5432/test}

[[ -x $BIN ]] || { echo "no $BIN: cargo build --release first (or set SECMON_BIN)" >&2; exit 2; }
BIN=$(realpath "$BIN")
NATS=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
[[ -x $NATS ]] || { echo "no nats-server: apt-get install nats-server (or set NATS_SERVER)" >&2; exit 2; }
command -v psql >/dev/null || { echo "no psql: apt-get install postgresql-client" >&2; exit 2; }
command -v jq >/dev/null || { echo "no jq: apt-get install jq" >&2; exit 2; }
if [[ -n ${BENCH_DIR:-} ]]; then
    WORK=$BENCH_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/secmon-bench-export.XXXXXX)
fi

PIDS=()
DB=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -n $DB ]] && psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    if [[ $KEEP != 1 ]]; then
        rm -rf "$WORK"/node-* "$WORK"/js
        if [[ -z ${BENCH_DIR:-} ]]; then rm -rf "$WORK"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%T)] $*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# start_node NAME [VAR=value ...]: a node on $WORK/node-NAME (fresh), its
# syslog TCP listener on a free port. Sets PID, API, SYSLOG, TOKEN.
start_node() {
    local name=$1 data=$WORK/node-$1
    shift
    rm -rf "$data" && mkdir -p "$data"
    # The API takes no request without a credential: an admin key, made
    # offline before the node starts.
    TOKEN=$("$BIN" apikey create bench --role admin --data-dir "$data" | jq -r .key)
    env GLIBC_TUNABLES="$NODE_TUNABLES" ENVIRONMENT=development SECMON_DATA_DIR="$data" BIND_ADDRESS=127.0.0.1 \
        GRAPHQL_PORT=0 WEBSOCKET_PORT=0 METRICS_PORT=0 HEALTH_PORT=0 \
        SYSLOG_UDP_PORT='' SYSLOG_TCP_PORT=0 SYSLOG_TLS_PORT='' RUST_LOG=warn "$@" \
        "$BIN" serve --config "$CONFIG_DIR" >>"$WORK/node-$name.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    local health code t0
    t0=$(now_ms)
    while :; do
        kill -0 "$PID" 2>/dev/null || { echo "node $name died; see $WORK/node-$name.log" >&2; tail -20 "$WORK/node-$name.log" >&2; exit 1; }
        health=$(jq -r .health "$data/ports.json" 2>/dev/null || true)
        if [[ -n $health && $health != null ]]; then
            code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$health/ready" || true)
            [[ $code == 200 ]] && break
        fi
        (( $(now_ms) - t0 < 120000 )) || { echo "node $name not ready within 120 s" >&2; exit 1; }
        sleep 0.05
    done
    API=http://127.0.0.1:$(jq -r .graphql "$data/ports.json")
    SYSLOG=127.0.0.1:$(jq -r .syslog_tcp "$data/ports.json")
    HEALTH=http://127.0.0.1:$health
}

stop_node() {
    kill -TERM "$1"
    wait "$1" 2>/dev/null || true
}

# The shipped configuration, with the API's rate limits out of the way: the
# search benchmark asks faster than an analyst (100 requests/s).
bench_config "$WORK/config"
CONFIG_DIR=$WORK/config

# 1. raw log
RAW=$WORK/raw.log
if [[ ! -s $RAW ]]; then
    log "generating $EVENTS lines into $RAW"
    "$BIN" bench generate --source "$SOURCE" --events "$EVENTS" --out "$RAW" >/dev/null
fi
RAW_BYTES=$(stat -c %s "$RAW")

# 2. ingest with each sink off and on. Each run gets a nats-server of its
# own (a fresh store), so the JetStream runs do not share a stream.
start_nats() {
    NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    rm -rf "$WORK/js" && mkdir -p "$WORK/js"
    "$NATS" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$WORK/js" >>"$WORK/nats.log" 2>&1 &
    NATS_PID=$!
    PIDS+=("$NATS_PID")
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done
}
# CPU seconds (user + system) a process has used.
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }

declare -A COMMITTED SEARCHABLE DRAIN ARCHIVE_BYTES NODE_CPU NATS_CPU
for run in none jetstream archive both; do
    start_nats
    sinks=()
    case $run in
        jetstream) sinks=(NATS_URL="nats://127.0.0.1:$NATS_PORT") ;;
        archive) sinks=(ARCHIVE_URL="file://$WORK/node-$run/archive" ARCHIVE_FLUSH_SECONDS=5) ;;
        both) sinks=(NATS_URL="nats://127.0.0.1:$NATS_PORT"
                     ARCHIVE_URL="file://$WORK/node-$run/archive" ARCHIVE_FLUSH_SECONDS=5) ;;
    esac
    start_node "$run" "${sinks[@]}"
    log "$run: ingesting $EVENTS lines over syslog TCP"
    SECMON_TOKEN=$TOKEN "$BIN" bench syslog --url "$API" --target "$SYSLOG" --from-file "$RAW" \
        >"$WORK/ingest-$run.json"
    committed_at=$(now_ms)
    COMMITTED[$run]=$(jq .committed_events_per_second "$WORK/ingest-$run.json")
    SEARCHABLE[$run]=$(jq .searchable_events_per_second "$WORK/ingest-$run.json")
    DRAIN[$run]=-
    if (( ${#sinks[@]} > 0 )); then
        # Every sink holds every event: /ready's export.sinks.*.exported.
        until curl -s "$HEALTH/ready" | jq -e --argjson n "$EVENTS" \
            '[.components.export.sinks[] | .exported >= $n] | all' >/dev/null; do
            (( $(now_ms) - committed_at < 600000 )) || { echo "$run: the sinks did not catch up within 600 s; see $WORK/node-$run.log" >&2; exit 1; }
            sleep 0.2
        done
        DRAIN[$run]=$(( $(now_ms) - committed_at ))
    fi
    NODE_CPU[$run]=$(cpu_s "$PID")
    NATS_CPU[$run]=-
    [[ $run == jetstream || $run == both ]] && NATS_CPU[$run]=$(cpu_s "$NATS_PID")
    [[ -d $WORK/node-$run/archive ]] && ARCHIVE_BYTES[$run]=$(du -sb "$WORK/node-$run/archive" | cut -f1)
    log "$run: $(jq -c '{committed_events_per_second, searchable_events_per_second}' "$WORK/ingest-$run.json"), sinks done ${DRAIN[$run]} ms after; CPU s: node ${NODE_CPU[$run]}, nats-server ${NATS_CPU[$run]}"
    stop_node "$PID"
    stop_node "$NATS_PID"
    rm -rf "$WORK/node-$run"
done

# 3. three nodes, one fleet
DB=secmon_bench_fleet_$$
psql -q "$PG_ADMIN" -c "CREATE DATABASE $DB" >/dev/null
DB_URL="${PG_ADMIN%/*}/$DB?sslmode=disable"
FLEET_KEY=$(head -c 48 /dev/urandom | base64 -w0)
head -n "$FLEET_EVENTS" "$RAW" >"$WORK/fleet.log"
FLEET_APIS=()
for n in 1 2 3; do
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    start_node "fleet-$n" GRAPHQL_PORT="$port" DATABASE_URL="$DB_URL" \
        FLEET_API_KEY="$FLEET_KEY" FLEET_API_URL="http://127.0.0.1:$port"
    FLEET_APIS+=("$API")
    [[ $n == 1 ]] && FIRST_TOKEN=$TOKEN
    log "fleet-$n: ingesting $FLEET_EVENTS lines"
    SECMON_TOKEN=$TOKEN "$BIN" bench syslog --url "$API" --target "$SYSLOG" --from-file "$WORK/fleet.log" \
        >"$WORK/ingest-fleet-$n.json"
done
t0=$(now_ms)
until curl -s -H "Authorization: Bearer $FIRST_TOKEN" -H 'Content-Type: application/json' \
    -d '{"query":"{ fleet { nodes { status apiUrl } } }"}' "${FLEET_APIS[0]}/graphql" \
    | jq -e '[.data.fleet.nodes[] | select(.status == "online" and .apiUrl != null)] | length == 3' >/dev/null; do
    (( $(now_ms) - t0 < 120000 )) || { echo "the three nodes are not in the fleet view within 120 s" >&2; exit 1; }
    sleep 1
done
for scope in node fleet; do
    flag=()
    [[ $scope == fleet ]] && flag=(--fleet)
    log "searching: $scope"
    SECMON_TOKEN=$FIRST_TOKEN "$BIN" bench search --url "${FLEET_APIS[0]}" --kinds term,phrase,range,stats \
        --requests "$REQUESTS" --concurrency "$SEARCH_CONCURRENCY" "${flag[@]}" >"$WORK/search-$scope.json"
done

ratio() { echo "scale=2; $1 / $2" | bc; }
{
    echo
    echo "secmon export and fleet search: $EVENTS events ($RAW_BYTES raw bytes), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
    echo
    printf '%-12s %13s %13s %7s %17s %14s %17s\n' "sinks" "committed/s" "searchable/s" "ratio" "sinks done after" "node CPU s" "nats-server CPU s"
    for run in none jetstream archive both; do
        printf '%-12s %13.0f %13.0f %7s %17s %14s %17s\n' "$run" "${COMMITTED[$run]}" "${SEARCHABLE[$run]}" \
            "$(ratio "${SEARCHABLE[$run]}" "${SEARCHABLE[none]}")" "${DRAIN[$run]} ms" "${NODE_CPU[$run]}" "${NATS_CPU[$run]}"
    done
    for run in archive both; do
        echo "archive ($run): ${ARCHIVE_BYTES[$run]} bytes, $(echo "scale=3; ${ARCHIVE_BYTES[$run]} / $RAW_BYTES" | bc) per raw byte"
    done
    echo
    echo "search on node 1 alone vs the fleet of 3 (each $FLEET_EVENTS events), $REQUESTS requests, $SEARCH_CONCURRENCY clients"
    printf '%-10s %12s %12s %12s %12s %10s\n' kind "node p50" "node p99" "fleet p50" "fleet p99" "p99 ratio"
    for i in 0 1 2 3; do
        kind=$(jq -r ".kinds[$i].kind" "$WORK/search-node.json")
        np50=$(jq ".kinds[$i].p50_ms" "$WORK/search-node.json"); np99=$(jq ".kinds[$i].p99_ms" "$WORK/search-node.json")
        fp50=$(jq ".kinds[$i].p50_ms" "$WORK/search-fleet.json"); fp99=$(jq ".kinds[$i].p99_ms" "$WORK/search-fleet.json")
        printf '%-10s %12.1f %12.1f %12.1f %12.1f %10s\n' "$kind" "$np50" "$np99" "$fp50" "$fp99" "$(ratio "$fp99" "$np99")"
    done
} | tee "$WORK/summary.txt"
