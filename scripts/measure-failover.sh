#!/usr/bin/env bash
# How fast replication follows a failover, against the engine's own failover
# time measured in the same run: runs the two failover tests of
# tests/replication.rs RUNS times (default 5) and tabulates what they print.
#
#   postgres: a synchronous standby promoted (pg_ctl promote) right after the
#             primary was stopped with -m immediate; "engine" is the time
#             until the standby takes writes, "sink" until the node's
#             Postgres sink applied a batch on it.
#   redis:    a master with two replicas and three Sentinels (down after
#             1 s), the master SIGKILLed; "engine" is the time until the
#             Sentinels name a new master, "sink" until the node's Redis
#             sink applied a batch on it (with redis_min_replicas: 1, so
#             after the other replica follows the new master).
#
# Both from the death of the old primary. The tests run the sinks with a
# backoff of 50 ms doubling to 1 s; with the defaults (500 ms to 10 s) a
# sink resumes at most retry_max_seconds after the engine is done.
#
#   scripts/measure-failover.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for i in $(seq "$runs"); do
    printf 'run %s/%s\n' "$i" "$runs" >&2
    cargo nextest run --no-capture --test replication failover 2>&1 | grep -E '^(postgres|redis sentinel) failover:' >>"$out" \
        || { echo "measure-failover.sh: the failover tests failed (run them with cargo nextest run --test replication failover)" >&2; exit 1; }
done
python3 - "$out" <<'PY'
import re, statistics, sys
unit = {"ms": 1e-3, "s": 1.0, "µs": 1e-6, "ns": 1e-9}
def secs(text):
    n, u = re.fullmatch(r"([\d.]+)(ms|s|µs|ns)", text).groups()
    return float(n) * unit[u]
rows = {}
for line in open(sys.argv[1]):
    engine, sink = re.findall(r"([\d.]+(?:ms|s|µs|ns)) after", line)
    rows.setdefault(line.split(" failover:")[0], []).append((secs(engine), secs(sink)))
print(f"{'engine':<16}{'runs':>5}{'engine p50':>12}{'sink p50':>10}{'ratio p50':>11}{'ratio max':>11}")
for name, pairs in rows.items():
    ratios = [s / e for e, s in pairs]
    print(f"{name:<16}{len(pairs):>5}{statistics.median(e for e, _ in pairs):>11.3f}s"
          f"{statistics.median(s for _, s in pairs):>9.3f}s{statistics.median(ratios):>10.2f}x{max(ratios):>10.2f}x")
PY
