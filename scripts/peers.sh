#!/usr/bin/env bash
# Runs the peers a user would otherwise pick on the same SSH log as secmon's
# built-in pack, and says which sources each flags:
#
# - fail2ban (Debian's package): its sshd filter, through `fail2ban-regex`,
#   and its default jail's counting (maxretry 5 within findtime 10 min);
# - CrowdSec (Debian's package, 1.4.6): a replay (`crowdsec -dsn file://`)
#   with the hub's syslog-logs, sshd-logs and dateparse-enrich parsers and
#   its ssh-bf and ssh-slow-bf scenarios (user-enum variants included), from
#   the hub the package ships, offline, into a throw-away local API database;
# - secmon: `secmon rules test rules/builtin/ssh_bruteforce.yml`.
#
# Usage: scripts/peers.sh [LOG] [--write FIXTURE]
#   LOG      a syslog file of sshd lines (default: Loghub's OpenSSH_2k.log)
#   --write  also write the peers' verdicts to FIXTURE (JSON), which
#            tests/detection.rs checks secmon's pack against on every run.
# Needs fail2ban and crowdsec from Debian, and a built secmon (SECMON_BIN,
# else target/debug/secmon). Offline, CrowdSec's post-install step fails
# registering to its central API and leaves dpkg half-configured (every
# later apt-get fails); its postinst skips that step when the credentials
# file exists and is not empty, so install it like this:
#   mkdir -p /etc/crowdsec
#   echo '# offline: no central API' > /etc/crowdsec/online_api_credentials.yaml
#   apt-get install -y --no-install-recommends fail2ban crowdsec
# Neither daemon needs to run. Exit 1 when secmon misses a source a peer
# flags.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/peers.sh
. scripts/lib/peers.sh
log="../shared/data/loghub/OpenSSH/OpenSSH_2k.log"
fixture=""
while [ $# -gt 0 ]; do
    case "$1" in
        --write) fixture="$2"; shift 2 ;;
        *) log="$1"; shift ;;
    esac
done
log="$(realpath "$log")"
secmon="${SECMON_BIN:-target/debug/secmon}"
for tool in fail2ban-regex crowdsec cscli "$secmon"; do
    command -v "$tool" >/dev/null || { echo "peers: $tool is missing (apt-get install fail2ban crowdsec; cargo build)" >&2; exit 2; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# fail2ban and CrowdSec (scripts/lib/peers.sh): the addresses each flags.
peers_fail2ban "$log" "$work"
peers_crowdsec "$log" "$work"

# secmon: the built-in SSH rules over the same lines.
"$secmon" rules test rules/builtin/ssh_bruteforce.yml --events "$log" > "$work/secmon.hits" 2>/dev/null

python3 - "$work" "$fixture" <<'EOF'
import collections, json, subprocess, sys

work, fixture = sys.argv[1], sys.argv[2]

fail2ban = set(open(f"{work}/fail2ban.banned").read().split())
crowdsec = collections.defaultdict(set)
for line in open(f"{work}/crowdsec.alerts"):
    ip, scenario = line.rstrip("\n").split("\t")
    crowdsec[ip].add(scenario)

secmon = collections.defaultdict(set)
for line in open(f"{work}/secmon.hits"):
    hit = json.loads(line)
    ip = (hit.get("group_key") or {}).get("source.ip")
    if hit.get("correlation") and ip:
        secmon[ip].add(hit["rule_title"])

print("| source | fail2ban (sshd jail) | CrowdSec | secmon |")
print("|---|---|---|---|")
for ip in sorted(fail2ban | set(crowdsec) | set(secmon)):
    print(f"| {ip} | {'banned' if ip in fail2ban else ''} | "
          f"{', '.join(sorted(crowdsec.get(ip, ())))} | {', '.join(sorted(secmon.get(ip, ())))} |")
peers = fail2ban | set(crowdsec)
missed = sorted(peers - set(secmon))
print(f"\nfail2ban flags {len(fail2ban)}, CrowdSec {len(crowdsec)}, secmon {len(secmon)}; "
      f"secmon misses {len(missed)}: {missed}")
if fixture:
    versions = {
        "fail2ban": subprocess.run(["fail2ban-client", "--version"], capture_output=True, text=True).stdout.strip(),
        "crowdsec": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "crowdsec"], capture_output=True, text=True).stdout.strip(),
    }
    json.dump({"made_by": "scripts/peers.sh", "versions": versions,
               "fail2ban": sorted(fail2ban), "crowdsec": {ip: sorted(s) for ip, s in sorted(crowdsec.items())}},
              open(fixture, "w"), indent=2)
    open(fixture, "a").write("\n")
sys.exit(1 if missed else 0)
EOF
