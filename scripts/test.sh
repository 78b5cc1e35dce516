#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine. Sets up what the tests need:
# PostgreSQL and Redis running (installed from Debian packages where absent),
# promtool (from Debian's prometheus package, unpacked into .tools/, never
# started as a service), the log senders the ingest tests drive (rsyslog,
# systemd-journal-remote, graypy; none is started as a service), the gql
# Python client (a third-party GraphQL subscription client), then runs
# the tests (cargo nextest when present). The notification tests get
# Alertmanager (unpacked from its Debian package) and aiosmtpd; the active
# response tests nftables and iproute2 (network namespaces, as root); the
# two-nodes-per-site test HAProxy (its own process); the export tests a
# nats-server of their own (Debian's package), nats-py, moto's S3 server,
# boto3 and DuckDB (PyPI). openssl runs
# scripts/generate-certs.sh and plays a syslog TLS client in tests/tls.rs.
# Then the otlp feature's test, and the deployment assets: Compose, Kubernetes
# and Helm (validators installed into .tools/ by their scripts), the Debian
# package built and checked in a throwaway root (as root).
# Extra arguments go to the test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }

[ -d ../shared/data ] || die "../shared/data is missing: the tests read real logs and rules from it (see README.md)"
command -v cargo >/dev/null || die "cargo is missing: install the Rust toolchain (rustup)"

apt_updated=
apt_install() {
    command -v apt-get >/dev/null || die "apt-get is missing: install $* by hand"
    if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# unpack_deb PACKAGE: Debian's package unpacked into .tools/ (its programs
# on PATH from there, never installed or started as a service).
unpack_deb() {
    say "fetching $1 (Debian package, unpacked into .tools/)"
    command -v apt-get >/dev/null || die "apt-get is missing: put $1's programs on PATH by hand"
    if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
    local tmp; tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq "$1" >/dev/null)
    mkdir -p .tools
    dpkg -x "$tmp/$1"_*.deb .tools
    rm -rf "$tmp"
}

# pip_ensure MODULE REQUIREMENT: pip-installs REQUIREMENT unless python3
# imports MODULE already.
pip_ensure() {
    python3 -c "import $1" 2>/dev/null && return
    say "installing $2 (pip)"
    python3 -m pip install --quiet --disable-pip-version-check "$2" || die "cannot install $2 (pip)"
}

ensure_postgres() {
    # The server binaries too: tests/replication.rs runs a cluster of its
    # own (initdb, pg_ctl) that it stops and starts.
    if ! command -v pg_isready >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        say "installing PostgreSQL"
        apt_install postgresql
    fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        say "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
    fi
    for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 -p 5432 && return; sleep 0.2; done
    die "PostgreSQL does not answer on 127.0.0.1:5432"
}

ensure_redis() {
    if ! command -v redis-server >/dev/null; then
        say "installing Redis"
        apt_install redis-server
    fi
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        say "starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
    fi
    for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return; sleep 0.2; done
    die "Redis does not answer on 127.0.0.1:6379"
}

ensure_haproxy() {
    # tests/replication.rs runs the shipped deploy/haproxy/secmon-site.cfg in
    # front of two nodes (its own process; the package's service is not used).
    if ! command -v haproxy >/dev/null; then
        say "installing HAProxy"
        apt_install haproxy
    fi
}

ensure_promtool() {
    [ -x .tools/usr/bin/promtool ] || unpack_deb prometheus
    export PATH="$PWD/.tools/usr/bin:$PATH"
    promtool --version >/dev/null || die "promtool does not run"
}

ensure_es_client() {
    # The real Elasticsearch client library, to test the _bulk surface.
    pip_ensure elasticsearch 'elasticsearch>=8,<9'
}

ensure_senders() {
    # Real log senders the ingest tests drive: util-linux logger, rsyslog
    # (omfwd), systemd-journal-remote (writes the journal files journalctl
    # reads) and graypy (a GELF client library).
    local missing=()
    command -v logger >/dev/null || missing+=(bsdutils)
    command -v openssl >/dev/null || missing+=(openssl)
    [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
    [ -x /lib/systemd/systemd-journal-remote ] || missing+=(systemd-journal-remote)
    command -v journalctl >/dev/null || missing+=(systemd)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    pip_ensure graypy 'graypy>=2,<3'
    pip_ensure gql.transport.websockets 'gql[websockets]>=3.5,<5'
}

ensure_notification_peers() {
    # Real receivers for the notification tests: Prometheus Alertmanager
    # (Debian package prometheus-alertmanager, unpacked into .tools/, never
    # started as a service) and aiosmtpd (an SMTP server, with STARTTLS).
    [ -x .tools/usr/bin/prometheus-alertmanager ] || unpack_deb prometheus-alertmanager
    export PATH="$PWD/.tools/usr/bin:$PATH"
    prometheus-alertmanager --version >/dev/null 2>&1 || die "prometheus-alertmanager does not run"
    # Debian's build reads its templates from this fixed path.
    local templates=/usr/share/prometheus/alertmanager
    if [ ! -f "$templates/default.tmpl" ]; then
        mkdir -p "$templates" && cp ".tools$templates"/*.tmpl "$templates"/ \
            || die "cannot install the Alertmanager templates into $templates"
    fi
    pip_ensure aiosmtpd 'aiosmtpd>=1.4,<2'
}

ensure_export_peers() {
    # tests/export.rs runs nats-servers and a moto S3 server of its own, and
    # reads back with nats-py, boto3 and DuckDB.
    if ! command -v nats-server >/dev/null && [ ! -x /usr/sbin/nats-server ]; then
        say "installing nats-server"
        apt_install nats-server
    fi
    pip_ensure nats 'nats-py>=2.6,<3'
    pip_ensure moto.server 'moto[server]>=5,<6'
    pip_ensure boto3 'boto3>=1.34,<2'
    pip_ensure duckdb 'duckdb>=1.1'
}

ensure_browser() {
    # tests/console_browser.rs drives Debian's chromium through its
    # chromedriver, and checks every page with axe-core (npm, vendored into
    # .tools/; never sent to the browser by the node itself).
    local missing=()
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    if [ ! -f .tools/axe-core/axe.min.js ]; then
        say "fetching axe-core"
        mkdir -p .tools/axe-core
        (cd .tools && npm pack --silent axe-core@4 >/dev/null && tar xzf axe-core-4*.tgz -C axe-core --strip-components 1 \
            && rm -f axe-core-4*.tgz) || die "cannot fetch axe-core from npm"
    fi
    export SECMON_AXE_JS="$PWD/.tools/axe-core/axe.min.js"
}

ensure_firewall() {
    # Active response tests build a network namespace (iproute2) and block
    # in nftables inside it.
    local missing=()
    command -v ip >/dev/null || missing+=(iproute2)
    command -v nft >/dev/null || missing+=(nftables)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt_install "${missing[@]}"
    fi
    [ "$(id -u)" = 0 ] || die "the active response tests create network namespaces: run as root"
}

ensure_postgres
ensure_redis
ensure_haproxy
ensure_export_peers
ensure_firewall
ensure_browser
ensure_promtool
ensure_es_client
ensure_senders
ensure_notification_peers

# tests/otlp.rs decodes the exported spans with the official protobuf definitions.
pip_ensure opentelemetry.proto.collector.trace.v1.trace_service_pb2 'opentelemetry-proto>=1.30,<2'

say "running the tests"
export SECMON_REQUIRE_PROMTOOL=1
export SECMON_REQUIRE_OPENSSL=1
if command -v cargo-nextest >/dev/null; then
    cargo nextest run --no-fail-fast "$@"
    say "OpenTelemetry export (cargo feature otlp)"
    cargo nextest run --features otlp --test otlp
else
    cargo test --no-fail-fast "$@"
    say "OpenTelemetry export (cargo feature otlp)"
    cargo test --features otlp --test otlp
fi

# The deployment assets, each checked by the best tools that run here
# (docs/DEPLOYMENT.md says what each proves and what it cannot).
say "Docker Compose and Dockerfile (scripts/check-compose.sh)"
scripts/check-compose.sh
say "Kubernetes manifests and Helm chart (scripts/check-k8s.sh)"
scripts/check-k8s.sh
say "Debian package and systemd unit (scripts/package-deb.sh --check --profile dev)"
# The dev profile: the tests built it already, a release build would take
# ~16 minutes here; the package is the same but for the binary's speed.
scripts/package-deb.sh --check --profile dev
