#!/usr/bin/env bash
# The console's server time and first-load size, against a running release
# node (issue 18, item 11):
#
#   1. a fresh node holds N realistic sshd lines of the last day (`secmon
#      bench generate`, sent over syslog TCP) and at least A alerts (A
#      events of a keyword rule made over the API, each from its own
#      address, beside what the built-in rules raise);
#   2. an analyst signs in through the console's form; each page is asked
#      R times in a row (after 5 warm-up requests) and timed from the
#      client on the same machine (loopback: the time is the server's);
#      p50/p99/max per page. Nothing is cached between requests: the
#      console keeps no result cache, every request reads the store and
#      the index;
#   3. the first load of each page: the HTML plus its stylesheet and
#      script, as transferred (no compression on the API port).
#
#   BENCH_EVENTS=1000000 BENCH_ALERTS=10000 BENCH_REQUESTS=200
#   BENCH_DIR=/tmp/...   work dir (default: a new temp dir, removed at the
#                        end unless BENCH_KEEP=1)
#   SECMON_BIN=target/release/secmon
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/bench.sh
. scripts/lib/bench.sh
EVENTS=${BENCH_EVENTS:-1000000}
ALERTS=${BENCH_ALERTS:-10000}
REQUESTS=${BENCH_REQUESTS:-200}
BIN=${SECMON_BIN:-target/release/secmon}
SOURCE=${BENCH_SOURCE:-../shared/data/loghub-2.0/2k_dataset/OpenSSH/OpenSSH_2k.log}
KEEP=${BENCH_KEEP:-0}

[[ -x $BIN ]] || { echo "no $BIN: cargo build --release first (or set SECMON_BIN)" >&2; exit 2; }
BIN=$(realpath "$BIN")
command -v jq >/dev/null || { echo "no jq: apt-get install jq" >&2; exit 2; }
if [[ -n ${BENCH_DIR:-} ]]; then
    WORK=$BENCH_DIR
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d /tmp/secmon-bench-console.XXXXXX)
fi
DATA=$WORK/node
PID=
cleanup() {
    [[ -n $PID ]] && { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    if [[ $KEEP != 1 ]]; then
        rm -rf "$DATA"
        if [[ -z ${BENCH_DIR:-} ]]; then rm -rf "$WORK"; fi
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[$(date +%T)] $*" >&2; }

# The shipped configuration, with the API's rate limits out of the way: the
# benchmark asks faster than an analyst.
bench_config "$WORK/config"

RAW=$WORK/raw.log
log "generating $EVENTS lines over the last day"
"$BIN" bench generate --source "$SOURCE" --events "$EVENTS" --out "$RAW" \
    --start "$(date -u -d '-24 hours' +%Y-%m-%dT%H:%M:%SZ)" --days 1 >/dev/null

rm -rf "$DATA" && mkdir -p "$DATA"
TOKEN=$("$BIN" apikey create bench --role admin --data-dir "$DATA" | jq -r .key)
PASSWORD=bench-console-password-1
echo "$PASSWORD" | "$BIN" user add analyst --role analyst --password-stdin --data-dir "$DATA" >/dev/null
env GLIBC_TUNABLES="$NODE_TUNABLES" ENVIRONMENT=development SECMON_DATA_DIR="$DATA" BIND_ADDRESS=127.0.0.1 \
    GRAPHQL_PORT=0 WEBSOCKET_PORT=0 METRICS_PORT=0 HEALTH_PORT=0 \
    SYSLOG_UDP_PORT='' SYSLOG_TCP_PORT=0 SYSLOG_TLS_PORT='' RUST_LOG=warn \
    "$BIN" serve --config "$WORK/config" >>"$WORK/node.log" 2>&1 &
PID=$!
for _ in $(seq 1200); do
    health=$(jq -r .health "$DATA/ports.json" 2>/dev/null || true)
    [[ -n $health && $health != null ]] && [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$health/ready" || true) == 200 ]] && break
    kill -0 "$PID" 2>/dev/null || { tail -20 "$WORK/node.log" >&2; exit 1; }
    sleep 0.1
done
API=http://127.0.0.1:$(jq -r .graphql "$DATA/ports.json")
SYSLOG=127.0.0.1:$(jq -r .syslog_tcp "$DATA/ports.json")

graphql() {
    curl -sf -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        --data "$(jq -nc --arg q "$1" --argjson v "${2:-{\}}" '{query: $q, variables: $v}')" "$API/graphql"
}
RULE='title: Console benchmark marker
id: b3c4c0de-0000-4000-8000-000000000011
logsource:
    product: linux
detection:
    keywords:
        - bench-console-marker
    condition: keywords
level: high
'
# shellcheck disable=SC2016 # $y is GraphQL's, not the shell's
graphql 'mutation($y: String!) { createRule(yaml: $y) { id } }' "$(jq -nc --arg y "$RULE" '{y: $y}')" | jq -e .data >/dev/null

log "sending $EVENTS lines over syslog TCP"
SECMON_TOKEN=$TOKEN "$BIN" bench syslog --url "$API" --target "$SYSLOG" --from-file "$RAW" >"$WORK/ingest.json"
log "ingested: $(jq -c '{committed_events_per_second, searchable_events_per_second}' "$WORK/ingest.json")"
log "raising $ALERTS alerts"
python3 - "$ALERTS" >"$WORK/alerts.ndjson" <<'EOF'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"message": f"bench-console-marker attempt {i}",
                      "source.ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}",
                      "user.name": "root", "host.name": f"web-{i % 16}"}))
EOF
curl -sf -H "authorization: Bearer $TOKEN" --data-binary @"$WORK/alerts.ndjson" "$API/api/v1/ingest" >/dev/null

python3 - "$API" "$PASSWORD" "$ALERTS" "$REQUESTS" "$EVENTS" "$TOKEN" <<'EOF'
import http.client, json, re, statistics, sys, time, urllib.parse
api, password, alerts, requests, events, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
host = urllib.parse.urlparse(api).netloc
conn = http.client.HTTPConnection(host)

def ask(method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r, r.read()

form = urllib.parse.urlencode({"username": "analyst", "password": password, "next": "/ui/alerts"})
r, _ = ask("POST", "/ui/login", form, {"content-type": "application/x-www-form-urlencoded", "origin": api})
assert r.status == 303, r.status
cookie = r.getheader("set-cookie").split(";")[0]
get = lambda path: ask("GET", path, headers={"cookie": cookie})

# Wait until every event is stored and searchable, and every alert raised.
deadline = time.time() + 600
while True:
    r, body = ask("POST", "/graphql", json.dumps({"query": "{ system { eventsStored indexLag } }"}),
                  {"authorization": f"Bearer {token}", "content-type": "application/json"})
    system = json.loads(body)["data"]["system"]
    r, body = get("/ui/alerts?status=any")
    held = int(re.search(rb'data-status="any">All <span class="count">(\d+)<', body).group(1))
    if system["eventsStored"] >= events + alerts and system["indexLag"] == 0 and held >= alerts:
        break
    assert time.time() < deadline, f"{held} alerts, {system}"
    time.sleep(1)
found = int(re.search(rb'<p class="summary"><strong>(\d+)</strong>', get("/ui/search?range=24h")[1]).group(1))
r, body = get("/ui/alerts")
first_alert = re.search(rb'data-id="(\d+)"', body).group(1).decode()
pages = [
    ("alert queue (open, newest first)", "/ui/alerts"),
    ("alert queue (all, by severity)", "/ui/alerts?status=any&sort=severity"),
    ("alert queue (filtered by host)", "/ui/alerts?host=web-3"),
    ("an alert", f"/ui/alerts/{first_alert}"),
    ("search, last 24 hours, no query", "/ui/search?range=24h"),
    ("search, a field term", "/ui/search?range=24h&q=" + urllib.parse.quote('user.name:root')),
    ("search, a phrase", "/ui/search?range=24h&q=" + urllib.parse.quote('"failed password"')),
    ("search, the last 15 minutes", "/ui/search?range=15m"),
]
assets = sorted(set(re.findall(rb'(/ui/assets/[^"]+)"', get("/ui/alerts")[1])))
asset_bytes = sum(len(get(a.decode())[1]) for a in assets)
rows = []
for name, path in pages:
    for _ in range(5):
        get(path)
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        r, body = get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status == 200, (path, r.status)
    times.sort()
    rows.append({"page": name, "path": path, "p50_ms": round(statistics.median(times), 1),
                 "p99_ms": round(times[int(len(times) * 0.99) - 1], 1), "max_ms": round(times[-1], 1),
                 "first_load_kb": round((len(body) + asset_bytes) / 1024, 1)})
print(json.dumps({"alerts": held, "events": found, "requests_per_page": requests, "pages": rows}, indent=2))
print(f"\n{held} alerts, {found} events; {requests} requests per page, one after another; uncached", file=sys.stderr)
print(f"{'page':40} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'first load KB':>14}", file=sys.stderr)
for row in rows:
    print(f"{row['page']:40} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8} {row['first_load_kb']:>14}", file=sys.stderr)
EOF
