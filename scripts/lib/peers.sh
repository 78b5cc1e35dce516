# shellcheck shell=bash
# The peers a user would otherwise pick, run offline over one SSH log; sourced
# by scripts/peers.sh and scripts/compare.sh (not run on its own).
#
#   peers_fail2ban LOG WORK [WRAPPER...]
#       fail2ban's sshd filter (default mode) through `fail2ban-regex`: every
#       failure as (ip, time) in WORK/fail2ban.rows; the addresses its default
#       sshd jail bans (maxretry 5 within findtime 10 min) in
#       WORK/fail2ban.banned, one a line, sorted.
#   peers_crowdsec LOG WORK [WRAPPER...]
#       CrowdSec (Debian's 1.4.6) replaying LOG (`crowdsec -dsn file://`) with
#       the hub's syslog-logs, sshd-logs and dateparse-enrich parsers and its
#       ssh-bf and ssh-slow-bf scenarios (user-enum variants included), from
#       the hub the package ships, into a throw-away local API database
#       (WORK/csdata/crowdsec.db); the alerts as `ip<TAB>scenario` lines in
#       WORK/crowdsec.alerts, sorted.
#
# WRAPPER is a command the tool runs under, e.g. `/usr/bin/time -v -o FILE`.
# Neither daemon needs to run; see scripts/peers.sh for how to install them.

peers_fail2ban() {
    local log=$1 work=$2
    shift 2
    "$@" fail2ban-regex -o row "$log" /etc/fail2ban/filter.d/sshd.conf 2>/dev/null >"$work/fail2ban.rows"
    python3 - "$work/fail2ban.rows" >"$work/fail2ban.banned" <<'EOF'
import ast, collections, sys

# fail2ban's default sshd jail: ban when 5 failures fall within 600 s.
times = collections.defaultdict(list)
for line in open(sys.argv[1]):
    line = line.strip().rstrip(",")
    if line.startswith("["):
        ip, t = line[1:].split(",")[:2]
        times[ast.literal_eval(ip.strip())].append(float(t))
banned = set()
for ip, ts in times.items():
    ts.sort()
    first = 0
    for i, t in enumerate(ts):
        while t - ts[first] > 600:
            first += 1
        if i - first + 1 >= 5:
            banned.add(ip)
            break
for ip in sorted(banned):
    print(ip)
EOF
}

peers_crowdsec() {
    local log=$1 work=$2
    shift 2
    # A private configuration over the hub the package ships.
    local hub=/usr/share/crowdsec/hub etc=$work/cs port
    mkdir -p "$etc"/parsers/{s00-raw,s01-parse,s02-enrich} "$etc/scenarios" "$work/csdata"
    ln -s "$hub/parsers/s00-raw/crowdsecurity/syslog-logs.yaml" "$etc/parsers/s00-raw/"
    ln -s "$hub/parsers/s01-parse/crowdsecurity/sshd-logs.yaml" "$etc/parsers/s01-parse/"
    ln -s "$hub/parsers/s02-enrich/crowdsecurity/dateparse-enrich.yaml" "$etc/parsers/s02-enrich/"
    # The scenarios as shipped but for `reprocess: true`: no scenario loaded
    # here reads their overflows, and with it 1.4.6 can hang at the end of a
    # replay (an overflow still to reprocess blocks its output routine once
    # the pour routines have stopped; the bucket routines wait on it forever).
    local scenario
    for scenario in ssh-bf ssh-slow-bf; do
        sed '/^reprocess: true$/d' "$hub/scenarios/crowdsecurity/$scenario.yaml" >"$etc/scenarios/$scenario.yaml"
    done
    cp -r /etc/crowdsec/patterns "$etc/"
    cp /etc/crowdsec/profiles.yaml /etc/crowdsec/simulation.yaml "$etc/"
    touch "$etc/acquis.yaml"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat >"$etc/config.yaml" <<EOF
common: {daemonize: false, log_media: stdout, log_level: error, working_dir: .}
config_paths:
  config_dir: $etc/
  data_dir: $work/csdata/
  simulation_path: $etc/simulation.yaml
  hub_dir: $hub/
  index_path: $hub/.index.json
crowdsec_service: {acquisition_path: $etc/acquis.yaml, parser_routines: 1}
db_config: {type: sqlite, db_path: $work/csdata/crowdsec.db, use_wal: false}
api:
  client: {credentials_path: $etc/local_api_credentials.yaml}
  server: {listen_uri: "127.0.0.1:$port", profiles_path: $etc/profiles.yaml, trusted_ips: [127.0.0.1]}
prometheus: {enabled: false}
EOF
    cscli -c "$etc/config.yaml" machines add replay --password replay \
        -f "$etc/local_api_credentials.yaml" --force >/dev/null 2>&1
    sed -i "s|^url: .*|url: http://127.0.0.1:$port|" "$etc/local_api_credentials.yaml"
    "$@" crowdsec -c "$etc/config.yaml" -dsn "file://$log" -type syslog >/dev/null 2>&1
    python3 - "$work/csdata/crowdsec.db" >"$work/crowdsec.alerts" <<'EOF'
import sqlite3, sys

db = sqlite3.connect(sys.argv[1])
for ip, scenario in sorted(set(db.execute("select source_ip, scenario from alerts where source_ip is not null"))):
    print(f"{ip}\t{scenario}")
EOF
}
