#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and, with --check, proves it in a
# throwaway root: installs it, checks its contents, runs the binary from it,
# checks the installed configuration, verifies the systemd unit, purges it.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    cat <<'EOF'
Usage: scripts/package-deb.sh [--check] [--profile PROFILE]

Builds target/debian/secmon_<version>_amd64.deb (cargo-deb; installed into
.tools/cargo if missing). The binary is built with the package's defaults
compiled in: data dir /var/lib/secmon, config dir /etc/secmon.

  --profile PROFILE  cargo profile: dist (default: fat LTO, one codegen unit;
                     about 6% less CPU an event than release), release, or
                     dev: the same package around an unoptimised binary,
                     which CI checks because an optimised build takes ~16 min
                     on 2 cores
  --check            then install it into a throwaway root (an overlay of this
                     machine's root filesystem, as root; the machine itself is
                     not changed) and check it: contents and conffiles, the
                     system user, the data dir initialised with the admin
                     password readable by root only, `secmon --version` and
                     `secmon config check --environment production` as the
                     service runs it, `systemd-analyze verify` and
                     `security` (exposure at most 2.5) of the unit,
                     and a purge that leaves nothing behind.
  -h, --help         this text
EOF
}

die() { printf 'package-deb.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '\n== %s\n' "$*"; }

check=
profile=dist
while [ $# -gt 0 ]; do
    case "$1" in
        --check) check=1; shift ;;
        --profile) [ $# -ge 2 ] || die "--profile needs a name"; profile=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

CARGO_DEB_VERSION=3.8.0
if ! command -v cargo-deb >/dev/null; then
    export PATH="$PWD/.tools/cargo/bin:$PATH"
fi
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    say "installing cargo-deb $CARGO_DEB_VERSION into .tools/cargo"
    cargo install --locked --quiet --root .tools/cargo cargo-deb --version "$CARGO_DEB_VERSION" \
        || die "cannot install cargo-deb from crates.io"
    export PATH="$PWD/.tools/cargo/bin:$PATH"
fi

say "building the package ($profile)"
SECMON_DEFAULT_DATA_DIR=/var/lib/secmon SECMON_DEFAULT_CONFIG_DIR=/etc/secmon \
    cargo build --locked --profile "$profile"
deb=$(cargo deb --no-build --strip --profile "$profile" 2>&1 | tail -1)
[ -f "$deb" ] || die "cargo deb did not write a package: $deb"
echo "$deb"

[ -n "$check" ] || exit 0

say "checking $deb in a throwaway root"
[ "$(id -u)" = 0 ] || die "--check installs into a throwaway root: run as root"
command -v systemd-analyze >/dev/null || die "systemd-analyze is missing: apt-get install systemd"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
case "$deb" in */secmon_"$version"_amd64.deb) ;; *) die "unexpected package name $deb (want secmon_${version}_amd64.deb)" ;; esac

fail() { printf 'package-deb.sh: FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf '  ok: %s\n' "$*"; }

# The package's file list and control data, before installing.
listing=$(dpkg-deb --contents "$deb")
for path in ./usr/bin/secmon ./etc/secmon/config.yaml ./etc/secmon/ports.yaml \
    ./etc/secmon/services.yaml ./etc/secmon/production.yaml ./etc/secmon/development.yaml \
    ./etc/secmon/secmon.env ./usr/lib/systemd/system/secmon.service \
    ./usr/share/doc/secmon/DEPLOYMENT.md ./usr/share/doc/secmon/copyright; do
    grep -q " $path\$" <<<"$listing" || fail "$path is not in the package"
done
ok "contents: binary, configuration, unit, docs"
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles)
for f in config.yaml ports.yaml services.yaml production.yaml development.yaml secmon.env; do
    grep -qx "/etc/secmon/$f" <<<"$conffiles" || fail "/etc/secmon/$f is not a conffile"
done
ok "every file in /etc/secmon is a conffile"
dpkg-deb --field "$deb" Depends | grep -q adduser || fail "Depends lacks adduser"

work=$(mktemp -d /tmp/secmon-deb.XXXXXX)
root=$work/root
cleanup() {
    for m in "$root/dev" "$root/proc" "$root/tmp" "$root"; do
        mountpoint -q "$m" 2>/dev/null && umount -l "$m"
    done
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$root" "$work/upper" "$work/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$root" \
    || die "cannot mount an overlay of / (needs root and overlayfs)"
mount --bind /proc "$root/proc"
mount --bind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/tmp"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

# A root that has never seen secmon.
in_root sh -c 'dpkg --purge secmon >/dev/null 2>&1; rm -rf /etc/secmon /var/lib/secmon; deluser --system secmon >/dev/null 2>&1 || true'
cp "$deb" "$root/tmp/secmon.deb"
in_root dpkg -i /tmp/secmon.deb >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "dpkg -i failed"; }
grep -q "its password is in /var/lib/secmon/admin_password" "$work/install.log" \
    || { cat "$work/install.log"; fail "postinst did not report the admin password file"; }
ok "installed"

in_root getent passwd secmon | grep -q ':/var/lib/secmon:/usr/sbin/nologin$' || fail "no system user secmon with nologin"
[ "$(in_root stat -c '%U:%G %a' /var/lib/secmon)" = "secmon:secmon 750" ] || fail "/var/lib/secmon is not secmon:secmon 750"
[ "$(in_root stat -c '%U:%G %a' /var/lib/secmon/admin_password)" = "root:root 600" ] || fail "admin_password is not root:root 600"
[ -s "$root/var/lib/secmon/admin_password" ] || fail "admin_password is empty"
[ "$(in_root stat -c '%U:%G %a' /etc/secmon/metrics_token)" = "root:secmon 640" ] || fail "metrics_token is not root:secmon 640"
[ "$(in_root stat -c '%U:%G %a' /etc/secmon/secmon.env)" = "root:secmon 640" ] || fail "secmon.env is not root:secmon 640"
for f in secmon.redb jwt_secret tls/server.crt tls/server.key; do
    [ "$(in_root stat -c '%U' "/var/lib/secmon/$f")" = secmon ] || fail "/var/lib/secmon/$f is not the daemon's"
done
ok "system user, data dir, admin password (root only), generated secrets"

in_root /usr/bin/secmon --version | grep -q "secmon $version" || fail "the installed binary does not run"
ok "secmon --version: $(in_root /usr/bin/secmon --version)"

# The configuration as the service sees it: its user, its environment file.
env_file=$(grep -v '^\s*#' "$root/etc/secmon/secmon.env" | grep -v '^\s*$' | tr '\n' ' ')
# shellcheck disable=SC2086
in_root setpriv --reuid=secmon --regid=secmon --init-groups env $env_file \
    /usr/bin/secmon config check --environment production >"$work/config.txt" 2>&1 \
    || { cat "$work/config.txt"; fail "secmon config check failed on the installed configuration"; }
grep -q '^data_dir: /var/lib/secmon$' "$work/config.txt" || fail "the packaged binary's data dir is not /var/lib/secmon"
ok "secmon config check --environment production passes as user secmon"
# The administrator's CLI finds the data dir without flags.
# Read whole, then searched: `grep -q` closing the pipe early would fail the write.
users=$(in_root setpriv --reuid=secmon --regid=secmon --init-groups /usr/bin/secmon user list) \
    || fail "secmon user list failed"
grep -q '"admin"' <<<"$users" || fail "secmon user list does not find the admin"
ok "secmon user list finds the admin without flags"

in_root systemd-analyze verify /usr/lib/systemd/system/secmon.service >"$work/verify.txt" 2>&1 \
    || { cat "$work/verify.txt"; fail "systemd-analyze verify"; }
if grep -v '^$' "$work/verify.txt" | grep -q .; then
    cat "$work/verify.txt"; fail "systemd-analyze verify printed warnings"
fi
ok "systemd-analyze verify: clean"
# The sandbox as systemd rates it (0 = locked down, 10 = exposed): 1.9 now.
in_root systemd-analyze security --offline=true --threshold=25 \
    /usr/lib/systemd/system/secmon.service >"$work/security.txt" 2>&1 \
    || { cat "$work/security.txt"; fail "systemd-analyze security: exposure above 2.5"; }
ok "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$work/security.txt")"
[ -L "$root/etc/systemd/system/multi-user.target.wants/secmon.service" ] || fail "the unit is not enabled"
ok "unit enabled"

in_root dpkg --purge secmon >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge failed"; }
for path in /usr/bin/secmon /etc/secmon /var/lib/secmon /usr/lib/systemd/system/secmon.service \
    /etc/systemd/system/multi-user.target.wants/secmon.service; do
    [ ! -e "$root$path" ] && [ ! -L "$root$path" ] || fail "$path is left after purge"
done
! in_root getent passwd secmon >/dev/null || fail "user secmon is left after purge"
! in_root getent group secmon >/dev/null || fail "group secmon is left after purge"
ok "purge left nothing behind"
say "package OK: $deb"
