#!/usr/bin/env bash
# Where a node's instructions go, per event, end to end: a fresh node (the
# release binary, development mode, the shipped config/*.yaml with the API's
# rate limits raised for the load generator's polling) runs under callgrind
# while `secmon bench syslog --from-file` sends it PROFILE_EVENTS realistic
# lines (`secmon bench generate`, Loghub OpenSSH) over syslog TCP until every
# one is searchable; then the inclusive instructions of the node's main
# parts, divided by the events. Instruction counts do not depend on what else
# the machine runs, so two binaries compare in one go where rates would not.
#
#   scripts/profile-node.sh [SECMON_BIN ...]
#
# One table per binary (default target/release/secmon). About two minutes a
# binary at the default 100 000 lines. Needs valgrind and jq (Debian
# packages). Variables: PROFILE_EVENTS, PROFILE_DIR (the work directory,
# default a fresh one under /tmp; its node.cg files stay for
# callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

EVENTS=${PROFILE_EVENTS:-100000}
WORK=${PROFILE_DIR:-$(mktemp -d /tmp/secmon-profile.XXXXXX)}
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || BINS=(target/release/secmon)
for tool in valgrind callgrind_annotate jq curl; do
    command -v "$tool" >/dev/null || { echo "profile-node: $tool is needed (apt-get install valgrind jq curl)" >&2; exit 1; }
done
log() { echo "[$(date +%T)] $*" >&2; }

mkdir -p "$WORK"
RAW=$WORK/raw.log
log "generating $EVENTS lines into $RAW"
"${BINS[0]}" bench generate --events "$EVENTS" --out "$RAW" >/dev/null
bench_config "$WORK/config"

# The parts reported: a name, and the function whose inclusive count it is.
PARTS=(
    "the whole node|PROGRAM TOTALS"
    "tantivy adding the documents|tantivy::indexer::segment_writer::SegmentWriter::add_document"
    "tantivy closing segments|tantivy::indexer::segment_writer::SegmentWriter::finalize"
    "tantivy merging segments|tantivy::indexer::merger::IndexMerger::write"
    "the writer thread|secmon::store::writer::run"
    "  the redb commit|secmon::store::Store::commit_batch"
    "    encoding the blocks|secmon::store::codec::Encoder::encode"
    "  the rules|secmon::detect::Detector::evaluate"
    "our indexer, building documents|secmon::store::index::EventIndex::document"
    "the connections|secmon::ingest::syslog::serve_tcp::{{closure}}::{{closure}}::{{closure}}"
    "  parse|secmon::parse::parse"
)

for bin in "${BINS[@]}"; do
    run=$WORK/$(basename "$bin")-$(sha256sum "$bin" | cut -c1-8)
    rm -rf "$run" && mkdir -p "$run/data"
    token=$("$bin" apikey create profile --role admin --data-dir "$run/data" | jq -r .key)
    log "$bin: a node under callgrind"
    env GLIBC_TUNABLES="$NODE_TUNABLES" ENVIRONMENT=development SECMON_DATA_DIR="$run/data" BIND_ADDRESS=127.0.0.1 \
        GRAPHQL_PORT=0 WEBSOCKET_PORT=0 METRICS_PORT=0 HEALTH_PORT=0 \
        SYSLOG_UDP_PORT='' SYSLOG_TCP_PORT=0 SYSLOG_TLS_PORT='' RUST_LOG=warn \
        valgrind --tool=callgrind --callgrind-out-file="$run/node.cg" \
        "$bin" serve --config "$WORK/config" >"$run/node.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 3000); do
        kill -0 "$pid" 2>/dev/null || { echo "profile-node: the node died; see $run/node.log" >&2; exit 1; }
        health=$(jq -r .health "$run/data/ports.json" 2>/dev/null || true)
        if [[ -n $health && $health != null ]] &&
            [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$health/ready" || true) == 200 ]]; then
            break
        fi
        sleep 0.1
    done
    api=http://127.0.0.1:$(jq -r .graphql "$run/data/ports.json")
    syslog=127.0.0.1:$(jq -r .syslog_tcp "$run/data/ports.json")
    SECMON_TOKEN=$token "$bin" bench syslog --url "$api" --target "$syslog" --from-file "$RAW" \
        --timeout-secs 7200 >"$run/ingest.json"
    kill "$pid"
    wait "$pid" || true
    # Sorted by inclusive count: a function's first line is its own entry
    # (the lines after it are its inlined parts).
    callgrind_annotate --inclusive=yes --threshold=100 "$run/node.cg" >"$run/inclusive.txt" 2>/dev/null
    echo
    echo "$bin: instructions per event, $EVENTS realistic lines over syslog TCP ($run/node.cg)"
    for part in "${PARTS[@]}"; do
        name=${part%%|*} fn=${part#*|}
        count=$(awk -v fn="$fn" '
            fn == "PROGRAM TOTALS" && /PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }
            { line = $0; sub(/ \[.*$/, "", line) }
            substr(line, length(line) - length(fn)) == ":" fn { gsub(",", "", $1); print $1; exit }' \
            "$run/inclusive.txt")
        printf '  %-36s %10s\n' "$name" "$(( ${count:-0} / EVENTS ))"
    done
done
