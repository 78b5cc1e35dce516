#!/usr/bin/env bash
# secmon side by side with the tools a user would otherwise pick, on ONE
# realistic SSH log, one after the other in the same run (these machines are
# noisy: every figure is also given as a ratio to secmon's):
#
#   1. secmon, end to end: a fresh node (the release binary, development
#      mode, the shipped config/*.yaml with the API's rate limits raised for
#      the load generator's polling), the log sent over syslog TCP (`secmon
#      bench syslog --from-file`) until every event is committed and
#      searchable; then the attacking addresses it flagged: the source IPs of
#      the alerts of the correlation rules of rules/builtin/ssh_bruteforce.yml
#      (brute force, slow brute force, spraying, login after brute force,
#      repeated failures), read over GraphQL with an admin API key. The other
#      built-in SSH rules flag no attacker (a root login, key changes) and the
#      service brute-force rules leave sshd to these;
#   2. Postgres as a user would make it a log store: a table (time, host,
#      program, message) with a GIN full-text index on
#      to_tsvector('english', message) (no other index), loaded with `\copy`
#      in batches of COMPARE_PG_BATCH lines, one transaction each, into a
#      scratch database. The log is cut into those columns beforehand (not
#      timed: a shipper's job). (docs/DEPLOYMENT.md's Postgres holds what
#      secmon replicates, alerts and roll-ups, not the events.) It flags no
#      address: "n/a";
#   3. fail2ban (Debian's 1.0.2): `fail2ban-regex` with its sshd filter, and
#      the addresses its default sshd jail bans (maxretry 5 within findtime
#      10 min), as scripts/peers.sh counts them (scripts/lib/peers.sh);
#   4. CrowdSec (Debian's 1.4.6): an offline replay (`crowdsec -dsn file://
#      -type syslog`) with the sshd parsers and the ssh-bf/ssh-slow-bf
#      scenarios, set up as scripts/peers.sh does (scripts/lib/peers.sh), and
#      the addresses it raised alerts on.
#
# The log: `secmon bench generate` over Loghub's OpenSSH_2k.log, which is a
# real server under attack: every 2000 lines are one pass over it, each pass
# with its own addresses, so its bursts of failures per address survive (a
# burst keeps one address within its pass; pam_unix's `rhost=` is varied
# like the sshd lines of the same connection). The time span is set here:
# the lines are spread at the pace of the source (2000 lines in 4 h 9 min,
# rounded up to whole days: --days), ending an hour ago (or on 31 December
# when that span would cross New Year: the lines have no year), so findtime
# and the leaky buckets see the attackers' real rate. Spread evenly, the
# fastest attackers send one failure every ~20 s: the slow scenarios flag
# them, CrowdSec's fast ssh-bf (6 within ~1 min) does not.
#
# Measures: events/s (secmon: searchable, i.e. stored, detected and indexed;
# Postgres: first COPY to last commit, index maintenance included; fail2ban
# and CrowdSec: lines / wall time of the run, less the wall time of a run over
# the first line alone: start-up and shutdown), peak RSS (secmon: the node's VmHWM; fail2ban-regex, crowdsec:
# GNU time's maximum RSS; Postgres: the loading backend's VmHWM, sampled from
# /proc/<pg_backend_pid()>/status: it counts the shared buffers that backend
# touched, not the server's other processes), disk per raw byte (secmon:
# secmon.redb + index/ after a clean stop; Postgres: pg_total_relation_size
# of the table, indexes and TOAST included, WAL not; CrowdSec: its SQLite
# database, which holds alerts, not events; fail2ban-regex keeps nothing).
#
#   COMPARE_EVENTS=1000000     lines to generate and load
#   COMPARE_DIR=/tmp/...       work dir (default: a new temp dir; removed at the
#                              end unless COMPARE_KEEP=1)
#   COMPARE_KEEP=0             1: keep the work dir (log, reports, verdicts)
#   COMPARE_PGURL=postgres://root@127.0.0.1:5432/test  (creates and drops a database)
#   COMPARE_PG_BATCH=10000     lines per COPY
#   COMPARE_CONNECTIONS=1      syslog TCP connections to secmon. One, as one
#                              host's syslog sends its lines: in order. With
#                              more, `bench syslog` deals the lines round-robin,
#                              so they reach the node out of order (by hours of
#                              event time at this pace); a correlation window
#                              counts a late line exactly only up to one
#                              timespan behind its group's newest, so the node
#                              then misses attackers it flags in order
#   SECMON_BIN=target/release/secmon
#
# Needs fail2ban, crowdsec and GNU time from Debian, psql, jq, curl, python3.
# Exit 2 when one is missing.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/peers.sh
. scripts/lib/peers.sh
# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh
EVENTS=${COMPARE_EVENTS:-1000000}
BIN=${SECMON_BIN:-target/release/secmon}
SOURCE=${COMPARE_SOURCE:-../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log}
PG_ADMIN=${COMPARE_PGURL:-postgres://root@127.0.0.1:5432/test}
PG_BATCH=${COMPARE_PG_BATCH:-10000}
CONNECTIONS=${COMPARE_CONNECTIONS:-1}
KEEP=${COMPARE_KEEP:-0}
RULES=rules/builtin/ssh_bruteforce.yml

INSTALL="install them (offline, CrowdSec's post-install step needs its credentials file first; see scripts/peers.sh):
  mkdir -p /etc/crowdsec
  echo '# offline: no central API' > /etc/crowdsec/online_api_credentials.yaml
  apt-get install -y --no-install-recommends fail2ban crowdsec time"
missing() { echo "compare: $1 is missing: $2" >&2; exit 2; }
[[ -x $BIN ]] || missing "$BIN" "cargo build --release first (or set SECMON_BIN)"
BIN=$(realpath "$BIN")
for tool in fail2ban-regex crowdsec cscli; do
    command -v "$tool" >/dev/null || missing "$tool" "$INSTALL"
done
/usr/bin/time -v true 2>/dev/null || missing "GNU time (/usr/bin/time)" "$INSTALL"
for tool in psql jq curl python3; do
    command -v "$tool" >/dev/null || missing "$tool" "apt-get install -y --no-install-recommends postgresql-client jq curl python3"
done
[[ -r $SOURCE ]] || missing "$SOURCE" "set COMPARE_SOURCE to Loghub's OpenSSH_2k.log"
psql -X -q "$PG_ADMIN" -c 'SELECT 1' >/dev/null 2>&1 ||
    missing "Postgres at $PG_ADMIN" "start it or set COMPARE_PGURL (a role that may create databases)"

if [[ -n ${COMPARE_DIR:-} ]]; then
    WORK=$(realpath -m "$COMPARE_DIR")
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/secmon-compare.XXXXXX)
fi
DATA=$WORK/node

PID=
SAMPLER=
DB=
cleanup() {
    [[ -n $SAMPLER ]] && { kill "$SAMPLER" 2>/dev/null || true; }
    if [[ -n $PID ]]; then
        kill -TERM "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    [[ -n $DB ]] && psql -X -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1
    if [[ $KEEP != 1 ]]; then
        rm -rf "$DATA" "$WORK"/pg "$WORK"/cs "$WORK"/csdata
        if [[ -z ${COMPARE_DIR:-} ]]; then rm -rf "$WORK"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%T)] $*" >&2; }
now_ns() { date +%s%N; }
kb() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status" 2>/dev/null; }
# calc EXPR: a number from python3 ("n/a" on a division by zero).
calc() { python3 -c "import sys
try: print($1)
except ZeroDivisionError: print('n/a')"; }
RUN_T0=$(now_ns)
MACHINE="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. The log.
RAW=$WORK/raw.log
read -r DAYS START < <(python3 - "$SOURCE" "$EVENTS" <<'EOF'
import datetime as dt, math, sys
lines = [l for l in open(sys.argv[1]) if len(l) > 16]
fmt = "%b %d %H:%M:%S"
first, last = (dt.datetime.strptime(l[:15], fmt) for l in (lines[0], lines[-1]))
pace = (last - first).total_seconds() / len(lines)
days = max(1, math.ceil(int(sys.argv[2]) * pace / 86400))
if days > 360:
    sys.exit(f"compare: {sys.argv[2]} lines at the source's pace span {days} days: more than a year of yearless lines")
end = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
start = end - dt.timedelta(days=days)
if start.year != end.year:
    end = end.replace(month=1, day=1, hour=0, minute=0, second=0) - dt.timedelta(hours=1)
    start = end - dt.timedelta(days=days)
print(days, start.strftime("%Y-%m-%dT%H:%M:%SZ"))
EOF
)
log "generating $EVENTS lines over $DAYS days from $START"
"$BIN" bench generate --source "$SOURCE" --events "$EVENTS" --out "$RAW" \
    --start "$START" --days "$DAYS" >"$WORK/generate.json"
RAW_BYTES=$(stat -c %s "$RAW")
N=$(wc -l <"$RAW")
log "raw: $N lines, $RAW_BYTES bytes, $(head -c 15 "$RAW") .. $(tail -n 1 "$RAW" | head -c 15)"

# 2. secmon: a fresh node, the shipped configuration with the API's rate
# limits out of the way (the load generator polls the node every 10 ms).
bench_config "$WORK/config"
rm -rf "$DATA" && mkdir -p "$DATA"
TOKEN=$("$BIN" apikey create compare --role admin --data-dir "$DATA" | jq -r .key)
env GLIBC_TUNABLES="$NODE_TUNABLES" ENVIRONMENT=development SECMON_DATA_DIR="$DATA" BIND_ADDRESS=127.0.0.1 \
    GRAPHQL_PORT=0 WEBSOCKET_PORT=0 METRICS_PORT=0 HEALTH_PORT=0 \
    SYSLOG_UDP_PORT='' SYSLOG_TCP_PORT=0 SYSLOG_TLS_PORT='' RUST_LOG=warn \
    "$BIN" serve --config "$WORK/config" >>"$WORK/node.log" 2>&1 &
PID=$!
t0=$(now_ns)
while :; do
    kill -0 "$PID" 2>/dev/null || { echo "compare: the node died; see $WORK/node.log" >&2; tail -20 "$WORK/node.log" >&2; exit 1; }
    health=$(jq -r .health "$DATA/ports.json" 2>/dev/null || true)
    if [[ -n $health && $health != null ]]; then
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$health/ready" || true) == 200 ]] && break
    fi
    (( ($(now_ns) - t0) < 120000000000 )) || { echo "compare: the node is not ready within 120 s; see $WORK/node.log" >&2; exit 1; }
    sleep 0.05
done
API=http://127.0.0.1:$(jq -r .graphql "$DATA/ports.json")
SYSLOG=127.0.0.1:$(jq -r .syslog_tcp "$DATA/ports.json")
log "secmon: sending $N lines over syslog TCP ($CONNECTIONS connections)"
SECMON_TOKEN=$TOKEN "$BIN" bench syslog --url "$API" --target "$SYSLOG" --from-file "$RAW" \
    --connections "$CONNECTIONS" --timeout-secs 7200 >"$WORK/secmon-ingest.json"
SECMON_EPS=$(jq .searchable_events_per_second "$WORK/secmon-ingest.json")
SECMON_COMMITTED_EPS=$(jq .committed_events_per_second "$WORK/secmon-ingest.json")
log "secmon: $(jq -c '{events, committed_events_per_second, searchable_events_per_second}' "$WORK/secmon-ingest.json")"

graphql() {
    curl -sf -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        --data "$(jq -nc --arg q "$1" --argjson v "$2" '{query: $q, variables: $v}')" "$API/graphql"
}
# The correlation rules of the pack: the ones that flag a source.
mapfile -t RULE_IDS < <(python3 - "$RULES" <<'EOF'
import re, sys
for doc in re.split(r"^---$", open(sys.argv[1]).read(), flags=re.M):
    if re.search(r"^correlation:", doc, re.M):
        print(re.search(r"^id: *(\S+)", doc, re.M).group(1))
EOF
)
(( ${#RULE_IDS[@]} > 0 )) || { echo "compare: no correlation rule in $RULES" >&2; exit 1; }
: >"$WORK/secmon.flagged"
for rule in "${RULE_IDS[@]}"; do
    after=null
    while :; do
        # shellcheck disable=SC2016 # $r and $a are GraphQL's, not the shell's
        page=$(graphql 'query($r: String!, $a: String) { alerts(ruleId: $r, first: 1000, after: $a) {
                pageInfo { hasNextPage endCursor } nodes { sourceIp groupKey } } }' \
            "$(jq -nc --arg r "$rule" --argjson a "$after" '{r: $r, a: $a}')") ||
            { echo "compare: the alerts query failed; see $WORK/node.log" >&2; exit 1; }
        jq -e '.errors | not' <<<"$page" >/dev/null || { echo "compare: alerts query: $page" >&2; exit 1; }
        jq -r '.data.alerts.nodes[] | (.sourceIp // .groupKey["source.ip"] // empty)' <<<"$page" >>"$WORK/secmon.flagged"
        [[ $(jq -r .data.alerts.pageInfo.hasNextPage <<<"$page") == true ]] || break
        after=$(jq -c .data.alerts.pageInfo.endCursor <<<"$page")
    done
done
sort -u -o "$WORK/secmon.flagged" "$WORK/secmon.flagged"
SECMON_RSS=$(kb "$PID" VmHWM)
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
PID=
SECMON_DISK=$(( $(du -sb "$DATA/secmon.redb" | cut -f1) + $(du -sb "$DATA/index" | cut -f1) ))
log "secmon: $(wc -l <"$WORK/secmon.flagged") addresses flagged, peak RSS $SECMON_RSS kB, $SECMON_DISK bytes on disk"
rm -rf "$DATA"

# 3. Postgres: COPY in batches into a table with a GIN full-text index.
DB=secmon_compare_$$
psql -X -q -v ON_ERROR_STOP=1 "$PG_ADMIN" -c "CREATE DATABASE $DB" >/dev/null
DB_URL="${PG_ADMIN%/*}/$DB"
mkdir -p "$WORK/pg"
# Cut into columns as the syslog source reads them (the year of a yearless
# date: the latest that does not put it in the future).
python3 - "$RAW" >"$WORK/pg/events.tsv" <<'EOF'
import datetime as dt, sys
now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=14)
months = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
days = {}
esc = lambda s: s.replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r")
out = sys.stdout
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    stamp, rest = line[:15], line[16:]
    host, _, rest = rest.partition(" ")
    tag, _, message = rest.partition(": ")
    program = tag.split("[", 1)[0]
    if stamp[:6] not in days:
        month, day = months[stamp[:3]], int(stamp[4:6])
        for year in range(now.year + 1, now.year - 9, -1):
            try:
                if dt.datetime(year, month, day, tzinfo=dt.timezone.utc) <= now:
                    break
            except ValueError:
                continue
        days[stamp[:6]] = f"{year}-{month:02}-{day:02}"
    out.write(f"{days[stamp[:6]]} {stamp[7:]}+00\t{esc(host)}\t{esc(program)}\t{esc(message)}\n")
EOF
split -l "$PG_BATCH" -d -a 6 "$WORK/pg/events.tsv" "$WORK/pg/batch."
rm -f "$WORK/pg/events.tsv"
psql -X -q -v ON_ERROR_STOP=1 "$DB_URL" >/dev/null <<'EOF'
CREATE TABLE events (time timestamptz NOT NULL, host text NOT NULL, program text NOT NULL, message text NOT NULL);
CREATE INDEX events_message_fts ON events USING gin (to_tsvector('english', message));
EOF
{
    echo '\set ON_ERROR_STOP on'
    echo "\\o $WORK/pg/start"
    echo "SELECT pg_backend_pid(), extract(epoch FROM clock_timestamp());"
    echo '\o'
    for batch in "$WORK"/pg/batch.*; do echo "\\copy events FROM '$batch'"; done
    echo "\\o $WORK/pg/end"
    echo "SELECT extract(epoch FROM clock_timestamp());"
    echo '\o'
    # The sampler reads the backend's peak once more before it exits.
    echo "SELECT pg_sleep(0.5);"
} >"$WORK/pg/load.sql"
log "Postgres: loading $N lines in batches of $PG_BATCH"
: >"$WORK/pg/hwm"
: >"$WORK/pg/anon"
(
    until [[ -s $WORK/pg/start ]]; do sleep 0.01; done
    backend=$(cut -d'|' -f1 "$WORK/pg/start")
    while hwm=$(kb "$backend" VmHWM) && [[ -n $hwm ]]; do
        echo "$hwm" >"$WORK/pg/hwm"
        kb "$backend" RssAnon >>"$WORK/pg/anon"
        sleep 0.1
    done
) &
SAMPLER=$!
psql -X -q -At "$DB_URL" -f "$WORK/pg/load.sql" >/dev/null
wait "$SAMPLER" || true
SAMPLER=
PG_SECONDS=$(calc "$(cut -f1 "$WORK/pg/end") - $(cut -d'|' -f2 "$WORK/pg/start")")
PG_EPS=$(calc "$N / $PG_SECONDS")
PG_RSS=$(cat "$WORK/pg/hwm")
PG_ANON=$(sort -n "$WORK/pg/anon" | tail -1)
read -r PG_ROWS PG_DISK < <(psql -X -At -F ' ' "$DB_URL" -c "SELECT count(*), pg_total_relation_size('events') FROM events")
[[ $PG_ROWS == "$N" ]] || { echo "compare: Postgres holds $PG_ROWS rows, not $N" >&2; exit 1; }
[[ -n $PG_RSS ]] || { echo "compare: could not read the Postgres backend's VmHWM (is the server on this machine?)" >&2; exit 1; }
log "Postgres: $PG_SECONDS s, backend peak RSS $PG_RSS kB, $PG_DISK bytes"
psql -X -q "$PG_ADMIN" -c "DROP DATABASE $DB WITH (FORCE)" >/dev/null
DB=
rm -rf "$WORK/pg"

# 4. fail2ban, 5. CrowdSec (scripts/lib/peers.sh), each under GNU time; each
# also over the log's first line alone, to take its start-up and shutdown off
# its time (secmon's node and Postgres are up before their clocks start).
seconds_of() { awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$1"; }
rss_of() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
# rate SECONDS FIXED: lines per second once FIXED is taken off SECONDS.
rate() { calc "$N / ($1 - $2 if $1 - $2 > 0 else $1)"; }
mkdir -p "$WORK/one"
head -n 1 "$RAW" >"$WORK/one/raw.log"
log "fail2ban: fail2ban-regex with its sshd filter"
peers_fail2ban "$WORK/one/raw.log" "$WORK/one" /usr/bin/time -v -o "$WORK/one/fail2ban.time"
peers_fail2ban "$RAW" "$WORK" /usr/bin/time -v -o "$WORK/fail2ban.time"
F2B_SECONDS=$(seconds_of "$WORK/fail2ban.time")
F2B_FIXED=$(seconds_of "$WORK/one/fail2ban.time")
F2B_EPS=$(rate "$F2B_SECONDS" "$F2B_FIXED")
F2B_RSS=$(rss_of "$WORK/fail2ban.time")
log "fail2ban: $F2B_SECONDS s ($F2B_FIXED s for one line), peak RSS $F2B_RSS kB, $(wc -l <"$WORK/fail2ban.banned") addresses banned"
log "CrowdSec: replay"
peers_crowdsec "$WORK/one/raw.log" "$WORK/one" /usr/bin/time -v -o "$WORK/one/crowdsec.time"
peers_crowdsec "$RAW" "$WORK" /usr/bin/time -v -o "$WORK/crowdsec.time"
CS_SECONDS=$(seconds_of "$WORK/crowdsec.time")
CS_FIXED=$(seconds_of "$WORK/one/crowdsec.time")
CS_EPS=$(rate "$CS_SECONDS" "$CS_FIXED")
CS_RSS=$(rss_of "$WORK/crowdsec.time")
CS_DISK=$(du -cb "$WORK"/csdata/crowdsec.db* | tail -1 | cut -f1)
cut -f1 "$WORK/crowdsec.alerts" | sort -u >"$WORK/crowdsec.flagged"
log "CrowdSec: $CS_SECONDS s ($CS_FIXED s for one line), peak RSS $CS_RSS kB, $(wc -l <"$WORK/crowdsec.flagged") addresses"
rm -rf "$WORK/one"

# The table.
python3 - "$WORK" <<EOF
import sys
work = sys.argv[1]
flagged = lambda name: set(open(f"{work}/{name}").read().split())
secmon = flagged("secmon.flagged")
raw = $RAW_BYTES
rows = [
    ("secmon (syslog TCP, end to end)", $SECMON_EPS, $SECMON_RSS, $SECMON_DISK, secmon),
    ("Postgres (COPY, GIN full text)", $PG_EPS, $PG_RSS, $PG_DISK, None),
    ("fail2ban-regex (sshd filter)", $F2B_EPS, $F2B_RSS, None, flagged("fail2ban.banned")),
    ("CrowdSec (replay, ssh-bf)", $CS_EPS, $CS_RSS, $CS_DISK, flagged("crowdsec.flagged")),
]
base = rows[0]
ratio = lambda a, b, f="{:.2f}": "n/a" if a is None or b in (None, 0) else f.format(a / b)
print()
print(f"secmon and its peers on one log: $N sshd lines over $DAYS days ($RAW_BYTES raw bytes), $(date -u '+%Y-%m-%d %H:%M UTC')")
print(f"machine: $MACHINE; load average before: $LOAD_BEFORE")
print()
head = ("tool", "events/s", "×secmon", "peak RSS MB", "×secmon", "disk/raw B", "×secmon",
        "flags", "secmon too", "secmon misses", "secmon extra")
fmt = "{:<32} {:>10} {:>8} {:>12} {:>8} {:>11} {:>8} {:>6} {:>11} {:>14} {:>13}"
print(fmt.format(*head))
print(fmt.format(*("-" * len(h) for h in head)))
for name, eps, rss, disk, found in rows:
    if found is None:
        detection = ("n/a",) * 4
    elif found is secmon:
        detection = (len(secmon), "-", "-", "-")
    else:
        detection = (len(found), len(found & secmon), len(found - secmon), len(secmon - found))
    print(fmt.format(name, f"{eps:.0f}", ratio(eps, base[1]), f"{rss / 1024:.1f}", ratio(rss, base[2]),
                     "n/a" if disk is None else f"{disk / raw:.3f}", ratio(disk, base[3]), *detection))
print()
print(f"events/s: secmon searchable (committed: {$SECMON_COMMITTED_EPS:.0f}/s); Postgres first COPY to last commit;")
print("  fail2ban-regex, crowdsec: lines / (wall time - wall time over one line): $F2B_SECONDS - $F2B_FIXED s, $CS_SECONDS - $CS_FIXED s")
print("peak RSS: secmon node VmHWM; Postgres the loading backend's VmHWM (sampled every 0.1 s; the shared buffers")
print("  it touched included: {:.1f} MB of it its own at most; other server processes not); fail2ban-regex,".format($PG_ANON / 1024))
print("  crowdsec: GNU time's maximum RSS")
print("disk: secmon.redb + index/; Postgres table + GIN index (WAL not); CrowdSec its SQLite db (alerts and the events")
print("  behind them, not the log); fail2ban-regex none")
print("flags: attacking addresses (secmon: $RULES correlations; fail2ban: sshd jail, maxretry 5 in 10 min;")
print("  CrowdSec: ssh-bf, ssh-slow-bf alerts); secmon too / misses: of the peer's; extra: secmon's the peer does not flag")
EOF
log "done in $(( ($(now_ns) - RUN_T0) / 1000000000 )) s"
[[ $KEEP == 1 ]] && log "work dir kept: $WORK"
exit 0
