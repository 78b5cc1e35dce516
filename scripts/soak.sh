#!/usr/bin/env bash
# The soak (docs/SECURITY.md, "Soak"): the release binary for an hour at a
# steady 20k syslog lines/s over TCP plus acknowledged HTTP ingest, with the
# built-in rules and replication to the machine's Postgres and Redis, while
# the node is SIGKILLed and restarted, Postgres and Redis are restarted and
# the hostile client attacks it. Then: acknowledged events lost (0),
# duplicates (0), alerts missing in Postgres (0), RSS growth over the second
# half (<= 10 %), p99 acknowledgement latency per 5-minute window.
#
#   scripts/soak.sh [--minutes 60] [--rate 20000] [--out soak-report] [driver options]
#
# SOAK_BIN=path uses that binary instead of building target/release/secmon.
# Restarts Postgres and Redis on this machine: run it where nothing else
# depends on them. Options are those of scripts/soak.py (--help).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { printf 'scripts/soak.sh: %s\n' "$*" >&2; exit 1; }

out=soak-report
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

bin=${SOAK_BIN:-target/release/secmon}
if [ -z "${SOAK_BIN:-}" ]; then
    echo "== building the release binary (about 18 min from clean on 2 cores)"
    cargo build --release --bin secmon
fi
[ -x "$bin" ] || die "$bin is missing"
bin=$(realpath "$bin")   # the driver starts it from a scratch directory
for cmd in psql pg_ctlcluster redis-cli redis-server python3; do
    command -v "$cmd" >/dev/null || die "$cmd is missing: the soak restarts the machine's Postgres and Redis"
done
pg_isready -q -h 127.0.0.1 -p 5432 || die "Postgres does not answer on 127.0.0.1:5432"
redis-cli -p 6379 ping >/dev/null || die "Redis does not answer on 127.0.0.1:6379"
cluster=$(pg_lsclusters -h | awk '$4 == "online" && $3 == 5432 { print $1 "/" $2; exit }')
[ -n "$cluster" ] || die "no online Postgres cluster on port 5432 (pg_lsclusters)"

work=$(mktemp -d /tmp/secmon-soak.XXXXXX)
trap 'rm -rf "$work"' EXIT   # soak.py stops its node however it ends
mkdir -p "$out"
db=secmon_soak
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" postgres
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db" postgres
redis-cli -p 6379 -n 5 flushdb >/dev/null

echo "== realistic syslog lines (secmon bench generate, from Loghub OpenSSH)"
"$bin" bench generate --events 200000 --out "$work/lines.log" >/dev/null

echo "== soak: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $("$bin" --version)"
python3 scripts/soak.py --binary "$bin" --work "$work" --out "$out" --lines "$work/lines.log" \
    --database-url "postgres://postgres@127.0.0.1:5432/$db" \
    --redis-url "redis://127.0.0.1:6379/5" --pg-cluster "$cluster" "${args[@]}"
