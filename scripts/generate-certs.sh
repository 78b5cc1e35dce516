#!/usr/bin/env bash
# Generates a CA, a server certificate it signs and, optionally, a client
# certificate for syslog mutual TLS, with the openssl command-line tool.
# For deployments; `secmon init` makes a development set without openssl.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/generate-certs.sh [OPTIONS] NAME...

Creates, with the openssl command-line tool, a CA and a server certificate
signed by it for secmon's HTTPS ports (GraphQL, WebSocket, metrics) and
syslog TLS. Each NAME is a DNS name or an IP address clients reach the
server by: the certificate's subject alternative names (the first is also
its common name).

Files written to DIR:
  ca.crt, ca.key           the CA (ECDSA P-256, valid 10 years). Clients trust
                           ca.crt; keep ca.key away from the server.
  server.crt, server.key   the server certificate and key:
                           TLS_CERT_PATH=DIR/server.crt TLS_KEY_PATH=DIR/server.key
  client.crt, client.key   with --client: a client certificate for syslog
                           mutual TLS; secmon then needs
                           SYSLOG_TLS_CLIENT_CA_PATH=DIR/ca.crt

Options:
  -o, --out DIR      where to write (default: ./certs)
  -d, --days DAYS    validity of the server and client certificates (default: 397)
  -c, --client CN    also write a client certificate with common name CN
  -f, --force        replace the server and client certificates and keys
                     (the CA is kept: delete ca.crt and ca.key for a new one)
  -h, --help         this text

Running it again changes nothing: existing files are kept, and an existing
CA signs any certificate that is missing. Keys are written mode 0600. With
--force, files are replaced by rename, and a running secmon picks up the new
certificate by itself (it re-reads it when the files change, or on SIGHUP).

Example:
  scripts/generate-certs.sh --out /etc/secmon/tls --client edge-01 \
      secmon.example.org 10.0.0.5
EOF
}

die() { printf 'generate-certs.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '%s\n' "$*"; }

out=./certs
days=397
client=
force=
names=()
while [ $# -gt 0 ]; do
    case "$1" in
        -o|--out) [ $# -ge 2 ] || die "$1 needs a directory (see --help)"; out=$2; shift 2 ;;
        -d|--days) [ $# -ge 2 ] || die "$1 needs a number of days (see --help)"; days=$2; shift 2 ;;
        -c|--client) [ $# -ge 2 ] || die "$1 needs a common name (see --help)"; client=$2; shift 2 ;;
        -f|--force) force=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; names+=("$@"); break ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) names+=("$1"); shift ;;
    esac
done

[ ${#names[@]} -gt 0 ] || die "give at least one NAME clients reach the server by, e.g. localhost (see --help)"
[[ $days =~ ^[1-9][0-9]{0,4}$ ]] || die "--days wants a whole number of days, not '$days'"
[[ -z $client || $client =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
    || die "--client wants a plain name (letters, digits, . _ -), not '$client'"
command -v openssl >/dev/null \
    || die "openssl is missing: install it (Debian/Ubuntu: apt install openssl; RHEL/Fedora: dnf install openssl)"

sans=()
for name in "${names[@]}"; do
    if [[ $name =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || ( $name == *:* && $name =~ ^[0-9A-Fa-f:.]+$ ) ]]; then
        sans+=("IP:$name")
    elif [[ $name =~ ^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$ ]]; then
        sans+=("DNS:$name")
    else
        die "'$name' is neither a DNS name nor an IP address"
    fi
done
san_list=$(IFS=,; printf '%s' "${sans[*]}")

mkdir -p "$out" || die "cannot create $out"
umask 077
tmp=$(mktemp -d "$out/.generate-certs.XXXXXX") || die "cannot write to $out"
trap 'rm -rf "$tmp"' EXIT

# Our own openssl configuration: the result does not depend on the system's.
cat >"$tmp/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san_list
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" \
        || die "openssl could not generate a key"
}

# Installs $tmp/NAME.key and $tmp/NAME.crt as $out/NAME.*, each by rename.
install_pair() {
    chmod 600 "$tmp/$1.key"
    chmod 644 "$tmp/$1.crt"
    mv -f "$tmp/$1.key" "$out/$1.key"
    mv -f "$tmp/$1.crt" "$out/$1.crt"
}

# Exists as a pair, or not at all.
pair_exists() {
    if [ -e "$out/$1.crt" ] && [ -e "$out/$1.key" ]; then
        return 0
    elif [ -e "$out/$1.crt" ] || [ -e "$out/$1.key" ]; then
        die "only one of $1.crt and $1.key is in $out: restore the other, or remove it"
    fi
    return 1
}

# sign NAME CN EXTENSIONS: a key and a certificate signed by the CA.
sign() {
    new_key "$tmp/$1.key"
    openssl req -new -config "$tmp/openssl.cnf" -key "$tmp/$1.key" -subj "/O=secmon/CN=$2" \
        -out "$tmp/$1.csr" || die "openssl could not make the $1 certificate request"
    openssl x509 -req -in "$tmp/$1.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
        -extfile "$tmp/openssl.cnf" -extensions "$3" -out "$tmp/$1.crt" 2>"$tmp/x509.err" \
        || { cat "$tmp/x509.err" >&2; die "openssl could not sign the $1 certificate"; }
    openssl verify -CAfile "$out/ca.crt" "$tmp/$1.crt" >/dev/null \
        || die "the new $1 certificate does not verify against $out/ca.crt"
    install_pair "$1"
    say "wrote $out/$1.crt and $out/$1.key"
}

if pair_exists ca; then
    say "kept the CA $out/ca.crt"
else
    new_key "$tmp/ca.key"
    openssl req -x509 -new -config "$tmp/openssl.cnf" -extensions ca_ext -key "$tmp/ca.key" \
        -subj "/O=secmon/CN=secmon CA" -sha256 -days 3650 -out "$tmp/ca.crt" \
        || die "openssl could not make the CA certificate"
    install_pair ca
    say "wrote $out/ca.crt and $out/ca.key"
fi

if [ -z "$force" ] && pair_exists server; then
    say "kept $out/server.crt (--force replaces it)"
    have=$(openssl x509 -in "$out/server.crt" -noout -ext subjectAltName 2>/dev/null || true)
    for san in "${sans[@]}"; do
        [[ $san == IP:*:* ]] && continue # openssl prints IPv6 addresses in its own form
        grep -qF "${san/#IP:/IP Address:}" <<<"$have" \
            || say "note: $out/server.crt does not name ${san#*:}: run with --force to replace it"
    done
else
    sign server "${names[0]}" server_ext
fi

if [ -n "$client" ]; then
    if [ -z "$force" ] && pair_exists client; then
        say "kept $out/client.crt (--force replaces it)"
    else
        sign client "$client" client_ext
    fi
fi

say "secmon: TLS_ENABLED=true TLS_CERT_PATH=$out/server.crt TLS_KEY_PATH=$out/server.key"
[ -z "$client" ] || say "syslog mutual TLS: SYSLOG_TLS_CLIENT_CA_PATH=$out/ca.crt; senders use client.crt, client.key and trust ca.crt"
