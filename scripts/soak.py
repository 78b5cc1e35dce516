#!/usr/bin/env python3
"""The soak: a real node under steady load for an hour, killed and restarted,
its Postgres and Redis restarted under it, attacked now and then; then every
acknowledged event, every duplicate and every replicated alert is counted.

Run through scripts/soak.sh (which builds the release binary, checks the
services and picks the database); this file is the driver. Only loopback
traffic: the node, Postgres and Redis are on this machine.

Load
  - syslog over TCP (RFC 6587 octet counting) at --rate lines/s from
    realistic lines (`secmon bench generate`, made from Loghub OpenSSH), each
    carrying a unique marker word `sk<n>`; syslog has no acknowledgement, so
    these are counted as sent and stored, and checked for duplicates; each
    line is stamped with the time it is sent (as a live sender does), so the
    correlation windows fill and expire as they would in production;
  - HTTP NDJSON at --http-rate events/s in batches (`/api/v1/ingest`
    answers 200 only after the commit): every event has a unique marker
    `hk<n>`; an acknowledged batch must be stored exactly once. A batch whose
    request failed without an answer is never resent (it may or may not be
    stored; it must not be stored twice); a 429 is retried (nothing of it
    was stored).

Faults (times from the start, in seconds)
  - SIGKILL and restart of the node every --kill-every s, during the first
    half of the run; one more at the half, then the node runs untouched for
    the second half, whose RSS must not grow by more than 10 %;
  - Postgres (`pg_ctlcluster ... restart`) and Redis (shutdown, start) every
    --services-every s, throughout;
  - the hostile client every --hostile-every s (the crash queries of issue
    17, an alias flood, a deep document, concurrent wrong logins, a
    connection flood, a GELF decompression bomb); the node must answer
    /health after each.

Report (JSON and a table on stdout): acknowledged events lost, duplicates,
replication rows missing after the last recovery, RSS over time (VmRSS, and
anonymous and file pages apart), p99
acknowledgement latency per 5-minute window, each fault and how long the
node took to come back.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from operator import itemgetter

START = time.monotonic()


def now():
    return time.monotonic() - START


def log(msg):
    print(f"[{now():7.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------- node


class Node:
    """The secmon process: started, killed, restarted; its ports from
    data/ports.json after each start."""

    def __init__(self, args):
        self.args = args
        self.proc = None
        self.ports = {}
        self.starts = []
        self.pids = []

    def env(self):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "ENVIRONMENT": "development",
            "SECMON_DATA_DIR": self.args.data_dir,
            "GRAPHQL_PORT": "0",
            "WEBSOCKET_PORT": "0",
            "METRICS_PORT": "0",
            "HEALTH_PORT": "0",
            "SYSLOG_UDP_PORT": "",
            "SYSLOG_TCP_PORT": "0",
            "SYSLOG_TLS_PORT": "",
            "GELF_UDP_PORT": "0",
            "DATABASE_URL": self.args.database_url,
            "REDIS_URL": self.args.redis_url,
            "RUST_LOG": "warn",
        }
        return env

    def start(self):
        ports_file = os.path.join(self.args.data_dir, "ports.json")
        try:
            os.remove(ports_file)
        except FileNotFoundError:
            pass
        t0 = time.monotonic()
        log_file = open(os.path.join(self.args.out, "daemon.log"), "ab")
        self.proc = subprocess.Popen(
            [self.args.binary, "serve"],
            cwd=self.args.work,
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        self.pids.append(self.proc.pid)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"secmon exited during start-up ({self.proc.returncode}): see {self.args.out}/daemon.log")
            try:
                with open(ports_file) as f:
                    ports = json.load(f)
                if "graphql" in ports and "health" in ports:
                    self.ports = ports
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            time.sleep(0.02)
        else:
            raise SystemExit("secmon did not write ports.json within 120 s")
        took = time.monotonic() - t0
        self.starts.append({"at": round(now(), 1), "start_seconds": round(took, 2)})
        log(f"node started (pid {self.proc.pid}) in {took:.2f} s")

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            log("node SIGKILLed")

    def terminate(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def rss_mib(self):
        """(VmRSS, RssAnon, RssFile) in MiB, or None: the total is what the
        check measures; anonymous memory is the heap, file pages mostly the
        index's mapped segments (a merge maps old and new ones at once)."""
        if not self.proc or self.proc.poll() is not None:
            return None
        fields = {}
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    name, _, value = line.partition(":")
                    if name in ("VmRSS", "RssAnon", "RssFile"):
                        fields[name] = int(value.split()[0]) / 1024
        except FileNotFoundError:
            return None
        if len(fields) < 3:
            return None
        return fields["VmRSS"], fields["RssAnon"], fields["RssFile"]

    def url(self, port="graphql"):
        return f"http://127.0.0.1:{self.ports[port]}"


def http(method, url, body=None, headers=None, timeout=30):
    """(status, bytes); status 0 when there was no answer."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


def graphql(node, key, query, variables=None, timeout=60):
    """The answer, or None when there was none; waits out rate limits (429)."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    for _ in range(100):
        status, data = http(
            "POST",
            node.url() + "/graphql",
            body,
            {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            timeout,
        )
        if status != 429:
            break
        time.sleep(1)
    if status != 200:
        return None
    return json.loads(data)


# --------------------------------------------------------------------- load


class Stats:
    def __init__(self):
        self.syslog_sent = 0
        self.syslog_ids = []  # (id, time sent) a sample, for the duplicate check
        self.http_acked = set()
        self.http_unknown = 0
        self.http_refused = 0
        self.latencies = []  # (time, seconds)
        self.rss = []  # (time, MiB, pid, anonymous MiB, file MiB)
        self.faults = []
        self.hostile = []


async def syslog_load(node, args, stats, lines, stop):
    """--rate lines/s over --connections connections, paced every 10 ms."""
    per_conn = args.rate / args.connections
    counter = [0]

    async def one(conn_no):
        writer = None
        tick = 0.01
        due = 0.0
        next_t = time.monotonic()
        while not stop.is_set():
            if writer is None:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", node.ports["syslog_tcp"])
                except (OSError, KeyError):
                    writer = None
                    await asyncio.sleep(0.2)
                    continue
            due += per_conn * tick
            n = int(due)
            due -= n
            frames = []
            stamp = time.strftime("%b %e %H:%M:%S", time.gmtime())
            for _ in range(n):
                i = counter[0]
                counter[0] += 1
                line = f"{stamp}{lines[i % len(lines)][15:]} sk{i}"
                data = line.encode()
                frames.append(f"{len(data)} ".encode() + data)
                if i % 997 == 0:
                    stats.syslog_ids.append((i, now()))
            try:
                writer.write(b"".join(frames))
                await asyncio.wait_for(writer.drain(), timeout=30)
                stats.syslog_sent += n
            except (OSError, asyncio.TimeoutError, ConnectionError):
                try:
                    writer.close()
                except Exception:
                    pass
                writer = None
                continue
            next_t += tick
            delay = next_t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -1:
                next_t = time.monotonic()  # behind by more than 1 s: do not burst
        if writer:
            writer.close()

    await asyncio.gather(*(one(c) for c in range(args.connections)))


async def http_load(node, args, stats, lines, key, stop):
    """--http-rate events/s in batches of --http-batch, each acknowledged
    after its commit; never resent without a 429."""
    loop = asyncio.get_running_loop()
    interval = args.http_batch / args.http_rate
    next_id = 0
    next_t = time.monotonic()
    while not stop.is_set():
        ids = list(range(next_id, next_id + args.http_batch))
        next_id += args.http_batch
        body = "".join(
            json.dumps({"message": f"{lines[i % len(lines)]} hk{i}", "labels": {"soak": "http"}}) + "\n"
            for i in ids
        ).encode()
        while True:
            t0 = time.monotonic()
            status, _ = await loop.run_in_executor(
                None,
                lambda: http(
                    "POST",
                    node.url() + "/api/v1/ingest",
                    body,
                    {"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
                    30,
                ),
            )
            took = time.monotonic() - t0
            if status == 200:
                stats.http_acked.update(ids)
                stats.latencies.append((now(), took))
                break
            if status == 429 and not stop.is_set():
                stats.http_refused += 1
                await asyncio.sleep(0.2)
                continue
            stats.http_unknown += len(ids)
            break
        next_t += interval
        delay = next_t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -5:
            next_t = time.monotonic()


async def rss_sampler(node, stats, stop):
    while not stop.is_set():
        rss = node.rss_mib()
        if rss is not None:
            total, anon, file = rss
            stats.rss.append((round(now(), 1), round(total, 1), node.proc.pid, round(anon, 1), round(file, 1)))
        await asyncio.sleep(10)


# --------------------------------------------------------------- hostile client


def hostile_round(node, key, args):
    """Each attack of the hostile suite, lightly; (name, answer) pairs."""
    results = []
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def gql(doc, variables=None):
        body = json.dumps({"query": doc, "variables": variables or {}}).encode()
        status, data = http("POST", node.url() + "/graphql", body, auth, 30)
        code = None
        try:
            v = json.loads(data)
            errors = v.get("errors") if isinstance(v, dict) else None
            code = errors[0].get("extensions", {}).get("code") if errors else "OK"
        except (ValueError, AttributeError, IndexError, TypeError):
            pass
        return f"{status} {code}"

    results.append(("huge offset cursor", gql('{ events(first:1, after:"bzEwMDAwMDAwMDAwMDAwMA") { totalCount } }')))
    deep = "(" * 300_000 + "a" + ")" * 300_000
    results.append(("deep search query", gql("query($q: String) { events(query: $q) { totalCount } }", {"q": deep})))
    aliases = " ".join(f"a{i}: events(first: 1000) {{ totalCount }}" for i in range(1200))
    results.append(("alias flood", gql("{ " + aliases + " }")))
    deep_vars = b'{"query": "query($v: [String]) { system { lastSeq } }", "variables": {"v": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    status, _ = http("POST", node.url() + "/graphql", deep_vars, auth, 30)
    results.append(("deep variables", status))
    lit = "{ events(query: " + "[" * 100_000 + "]" * 100_000 + ") { totalCount } }"
    results.append(("deep literal", gql(lit)))

    def wrong_login():
        body = json.dumps(
            {"query": 'mutation { login(username: "admin", password: "wrong-password-guess") { accessToken } }'}
        ).encode()
        status, data = http("POST", node.url() + "/graphql", body, {"Content-Type": "application/json"}, 30)
        try:
            return json.loads(data)["errors"][0]["extensions"]["code"]
        except (ValueError, KeyError, IndexError, TypeError):
            return str(status)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(lambda _: wrong_login(), range(200)))
    results.append(("200 concurrent wrong logins", {str(s): statuses.count(s) for s in set(statuses)}))

    import socket

    socks = []
    for _ in range(300):
        try:
            socks.append(socket.create_connection(("127.0.0.1", node.ports["syslog_tcp"]), timeout=2))
        except OSError:
            break
    time.sleep(1)
    kept = 0
    for s in socks:
        s.setblocking(False)
        try:
            kept += s.recv(1) != b""  # b"": the node closed it
        except BlockingIOError:
            kept += 1  # still open
        except OSError:
            pass
        s.close()
    results.append(("syslog connection flood", f"{kept} of {len(socks)} connections kept open by the node"))

    if "gelf_udp" in node.ports:
        payload = b'{"version":"1.1","host":"bomb","short_message":"' + b"A" * (8 << 20) + b'"}'
        bomb = zlib.compress(payload, 9)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(20):
                s.sendto(bomb, ("127.0.0.1", node.ports["gelf_udp"]))
        results.append(("GELF zlib bomb", f"20 datagrams of {len(bomb)} B, {len(payload) >> 20} MiB each inflated"))
    status, _ = http("GET", node.url("health") + "/health", timeout=10)
    results.append(("/health after", status))
    return results


# ---------------------------------------------------------------- faults


def restart_postgres(args):
    cluster = args.pg_cluster.split("/")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster[0], cluster[1], "restart"],
        check=False,
        capture_output=True,
    )


def restart_redis(args):
    subprocess.run(["redis-cli", "-p", "6379", "shutdown", "nosave"], check=False, capture_output=True)
    for _ in range(50):
        if subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True).returncode != 0:
            break
        time.sleep(0.1)
    subprocess.run(
        ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"],
        check=False,
        capture_output=True,
    )
    for _ in range(100):
        if subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True).returncode == 0:
            return
        time.sleep(0.1)


async def faults(node, args, stats, key, stop):
    loop = asyncio.get_running_loop()
    half = args.minutes * 60 / 2
    next_kill = args.kill_every
    next_services = args.services_every
    next_hostile = args.hostile_every
    final_kill_done = False
    while not stop.is_set():
        await asyncio.sleep(1)
        t = now()
        if (t >= next_kill and t < half) or (t >= half and not final_kill_done):
            if t >= half:
                final_kill_done = True
            t0 = time.monotonic()
            node.kill9()
            await loop.run_in_executor(None, node.start)
            stats.faults.append({"at": round(t, 1), "fault": "SIGKILL", "back_in_seconds": round(time.monotonic() - t0, 2)})
            next_kill += args.kill_every
        if t >= next_services:
            t0 = time.monotonic()
            await loop.run_in_executor(None, restart_postgres, args)
            await loop.run_in_executor(None, restart_redis, args)
            stats.faults.append({"at": round(t, 1), "fault": "postgres+redis restart", "took_seconds": round(time.monotonic() - t0, 2)})
            log("Postgres and Redis restarted")
            next_services += args.services_every
        if t >= next_hostile:
            results = await loop.run_in_executor(None, hostile_round, node, key, args)
            stats.hostile.append({"at": round(t, 1), "results": results})
            log(f"hostile round: {results}")
            next_hostile += args.hostile_every
        if t >= args.minutes * 60:
            stop.set()


# ---------------------------------------------------------------- checks


def wait_settled(node, key, timeout=900):
    """Until lastSeq stops moving and indexLag is 0."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        v = graphql(node, key, "{ system { lastSeq indexLag eventsStored } }")
        if v and "data" in v and v["data"]:
            s = v["data"]["system"]
            if s["indexLag"] == 0 and s["lastSeq"] == last:
                return s
            last = s["lastSeq"]
        time.sleep(2)
    raise SystemExit("the node did not settle (index lag) in time")


def stored_http_ids(node, key):
    """Every `hk<n>` marker stored, with its count, read through search a
    page of 1000 at a time."""
    counts = {}
    after = None
    while True:
        v = graphql(
            node,
            key,
            "query($after: String) { events(query: \"labels.soak:http\", first: 1000, after: $after) "
            "{ edges { node { message } } pageInfo { hasNextPage endCursor } } }",
            {"after": after},
            timeout=120,
        )
        if not v or v.get("errors"):
            raise SystemExit(f"paging the HTTP events failed: {v and v.get('errors')}")
        page = v["data"]["events"]
        for edge in page["edges"]:
            word = edge["node"]["message"].rsplit(" ", 1)[-1]
            if word.startswith("hk"):
                n = int(word[2:])
                counts[n] = counts.get(n, 0) + 1
        if not page["pageInfo"]["hasNextPage"]:
            return counts
        after = page["pageInfo"]["endCursor"]


def total(node, key, query):
    v = graphql(node, key, "query($q: String) { events(query: $q, first: 1) { totalCount } }", {"q": query}, 120)
    if not v or v.get("errors"):
        raise SystemExit(f"counting {query!r} failed: {v and v.get('errors')}")
    return v["data"]["events"]["totalCount"]


def node_alerts(node, key):
    alerts = {}
    after = None
    while True:
        v = graphql(
            node,
            key,
            "query($after: String) { alerts(first: 1000, after: $after) { edges { node { id count status } } "
            "pageInfo { hasNextPage endCursor } } }",
            {"after": after},
            timeout=120,
        )
        if not v or v.get("errors"):
            raise SystemExit(f"paging the alerts failed: {v and v.get('errors')}")
        page = v["data"]["alerts"]
        for edge in page["edges"]:
            a = edge["node"]
            alerts[str(a["id"])] = (int(a["count"]), a["status"].lower())
        if not page["pageInfo"]["hasNextPage"]:
            return alerts
        after = page["pageInfo"]["endCursor"]


def postgres_alerts(args, node_id):
    out = subprocess.run(
        ["psql", args.database_url.split("?")[0], "-At", "-F", "\t", "-c",
         f"SELECT alert_id, count, lower(status) FROM secmon.alerts WHERE node_id = '{node_id}'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        alert_id, count, status = line.split("\t")
        rows[alert_id] = (int(count), status)
    return rows


def wait_replicated(node, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = http("GET", node.url("metrics") + "/metrics", headers={"Authorization": f"Bearer {node.key}"})
        if status == 200:
            lags = [
                float(line.rsplit(" ", 1)[1])
                for line in body.decode().splitlines()
                if line.startswith("secmon_replication_lag_entries")
            ]
            if lags and all(lag == 0 for lag in lags):
                return
        time.sleep(2)
    raise SystemExit("replication did not catch up in time")


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))
    return values[k]


# ---------------------------------------------------------------- main


async def run(args):
    lines = [l.rstrip("\n") for l in open(args.lines) if l.strip()]
    node = Node(args)
    key = subprocess.run(
        [args.binary, "apikey", "create", "soak", "--role", "admin", "--data-dir", args.data_dir],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "")},
    )
    key = json.loads(key.stdout)["key"]
    node.key = key
    try:
        return await soak(node, args, key, lines)
    finally:
        node.kill9()


async def soak(node, args, key, lines):
    node.start()
    stats = Stats()
    stop = asyncio.Event()
    await asyncio.gather(
        syslog_load(node, args, stats, lines, stop),
        http_load(node, args, stats, lines, key, stop),
        rss_sampler(node, stats, stop),
        faults(node, args, stats, key, stop),
        progress(stats, args, stop),
    )
    log("load stopped; waiting for the node to settle")
    system = wait_settled(node, key)
    log(f"settled: {system}")
    wait_replicated(node)
    counts = stored_http_ids(node, key)
    lost = sorted(i for i in stats.http_acked if counts.get(i, 0) == 0)
    http_dups = sorted(i for i, c in counts.items() if c > 1)
    syslog_stored = system["eventsStored"] - sum(counts.values())
    sample = random.Random(1).sample(stats.syslog_ids, min(500, len(stats.syslog_ids)))
    sample_dups = [i for i, _ in sample if total(node, key, f"sk{i}") > 1]
    node_id = graphql(node, key, "{ system { nodeId } }")["data"]["system"]["nodeId"]
    mine = node_alerts(node, key)
    central = postgres_alerts(args, node_id)
    missing = sorted(a for a, v in mine.items() if central.get(a) != v)
    node.terminate()

    windows = {}
    for t, secs in stats.latencies:
        windows.setdefault(int(t // 300), []).append(secs)
    p99 = [
        {"window": f"{w * 5}-{w * 5 + 5} min", "requests": len(v), "p99_ms": round(percentile(v, 99) * 1000, 1)}
        for w, v in sorted(windows.items())
    ]
    half = args.minutes * 60 / 2
    last_pid = stats.rss[-1][2] if stats.rss else None
    tail = [s for s in stats.rss if s[2] == last_pid and s[0] >= half + 300]

    def growth_of(column):
        if len(tail) < 12:
            return None
        first = statistics.median(s[column] for s in tail[:6])
        last = statistics.median(s[column] for s in tail[-6:])
        return round((last - first) / first * 100, 1)

    growth, anon_growth = growth_of(1), growth_of(3)
    report = {
        "minutes": args.minutes,
        "syslog_rate_target": args.rate,
        "syslog_sent": stats.syslog_sent,
        "syslog_rate_achieved": round(stats.syslog_sent / (args.minutes * 60)),
        "syslog_stored": syslog_stored,
        "syslog_sample_checked": len(sample),
        "syslog_sample_duplicates": len(sample_dups),
        "http_acknowledged": len(stats.http_acked),
        "http_acknowledged_lost": len(lost),
        "http_lost_examples": lost[:20],
        "http_duplicates": len(http_dups),
        "http_unanswered_not_resent": stats.http_unknown,
        "http_429_retried": stats.http_refused,
        "alerts_on_node": len(mine),
        "alerts_missing_or_stale_in_postgres": len(missing),
        "alerts_missing_examples": missing[:20],
        "rss_growth_last_half_percent": growth,
        "rss_anon_growth_last_half_percent": anon_growth,
        "rss_mib": stats.rss,
        "p99_ack_latency_per_5_min": p99,
        "faults": stats.faults,
        "starts": node.starts,
        "hostile": stats.hostile,
    }
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print()
    print("| check | value | must be |")
    print("|---|---|---|")
    print(f"| acknowledged (HTTP) events lost | {len(lost)} of {len(stats.http_acked)} | 0 |")
    print(f"| duplicates (HTTP, every event) | {len(http_dups)} | 0 |")
    print(f"| duplicates (syslog, sample of {len(sample)}) | {len(sample_dups)} | 0 |")
    print(f"| syslog lines sent / stored | {stats.syslog_sent} / {syslog_stored} | stored <= sent |")
    print(f"| alerts missing or stale in Postgres | {len(missing)} of {len(mine)} | 0 |")
    print(f"| RSS growth, second half (one process) | {growth} % | <= 10 % |")
    print(f"| of which anonymous memory (the heap) | {anon_growth} % | |")
    for w in p99:
        print(f"| p99 ack latency {w['window']} | {w['p99_ms']} ms ({w['requests']} requests) | |")
    ok = not lost and not http_dups and not sample_dups and not missing and syslog_stored <= stats.syslog_sent
    ok = ok and growth is not None and growth <= 10
    print(f"\nsoak {'passed' if ok else 'FAILED'}; report: {args.out}/report.json")
    return 0 if ok else 1


async def progress(stats, args, stop):
    while not stop.is_set():
        await asyncio.sleep(60)
        rss = "RSS {} MiB (anonymous {}, file {})".format(*itemgetter(1, 3, 4)(stats.rss[-1])) if stats.rss else ""
        log(
            f"syslog sent {stats.syslog_sent} ({stats.syslog_sent / max(now(), 1):.0f}/s), "
            f"HTTP acked {len(stats.http_acked)}, {rss}"
        )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", required=True)
    p.add_argument("--work", required=True, help="a scratch directory (data/ inside)")
    p.add_argument("--out", required=True)
    p.add_argument("--lines", required=True, help="realistic syslog lines, one per line")
    p.add_argument("--database-url", required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--pg-cluster", required=True, help="VERSION/NAME for pg_ctlcluster")
    p.add_argument("--minutes", type=float, default=60)
    p.add_argument("--rate", type=int, default=20_000)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--http-rate", type=int, default=500)
    p.add_argument("--http-batch", type=int, default=50)
    p.add_argument("--kill-every", type=float, default=300)
    p.add_argument("--services-every", type=float, default=600)
    p.add_argument("--hostile-every", type=float, default=420)
    args = p.parse_args()
    args.data_dir = os.path.join(args.work, "data")
    os.makedirs(args.out, exist_ok=True)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
