#!/usr/bin/env bash
# A verified, rotated backup of a secmon node: `secmon backup` (an online,
# consistent copy taken by the running daemon, or offline when none runs,
# which secmon verifies in a scratch data dir and checksums), kept as the
# newest of N. The daemon can do the same by itself, also to S3:
# backup.schedule in the configuration (docs/OPERATIONS.md).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/backup.sh [--keep N] [--data-dir DIR] [--secmon PATH] DEST

Writes DEST/secmon-<host>-<UTC time>.redb, its SHA-256 beside it (.redb.sha256,
`sha256sum -c` reads it) and DEST/<same>.json (what the backup holds: events,
last sequence number, bytes, checksum). secmon verifies it first: opens a copy
in a scratch data dir, reads every event and compares with what the backup
reported. Then keeps the newest N backups in DEST (default 7), deleting older
ones.

The daemon writes the copy (it holds the store), into DATA_DIR/backups
first: under the systemd unit the daemon may write nowhere else. The file is
then moved to DEST. Run it as root or as the secmon user. Backups are
written mode 0600 (DEST is created 0700) and each is in the audit log
(backup.create).

  --keep N          backups to keep in DEST (default 7; 0 keeps all)
  --data-dir DIR    the node's data dir (default: $SECMON_DATA_DIR, else
                    /var/lib/secmon when it exists, else ./data)
  --secmon PATH     the secmon binary (default: secmon on PATH)
  -h, --help        this text

Restore (stop the daemon first; the node gets a new node id):
  systemctl stop secmon
  sudo -u secmon secmon restore DEST/secmon-....redb --data-dir /var/lib/secmon
  systemctl start secmon

Cron, daily at 03:15 (root):
  15 3 * * * /usr/share/secmon/backup.sh --keep 14 /srv/backup/secmon
EOF
}

die() { printf 'backup.sh: %s\n' "$*" >&2; exit 1; }

# A backup holds the accounts, the audit log and the channels' secrets:
# whatever this script creates (DEST, the report) is private to its user.
# secmon itself writes the .redb mode 0600 whatever the umask.
umask 077

keep=7
data_dir=${SECMON_DATA_DIR:-}
secmon=secmon
dest=
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) [ $# -ge 2 ] || die "--keep needs a number"; keep=$2; shift 2 ;;
        --data-dir) [ $# -ge 2 ] || die "--data-dir needs a directory"; data_dir=$2; shift 2 ;;
        --secmon) [ $# -ge 2 ] || die "--secmon needs a path"; secmon=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$dest" ] || die "one DEST only (see --help)"; dest=$1; shift ;;
    esac
done
[ -n "$dest" ] || die "give the directory to write backups to (see --help)"
[[ $keep =~ ^[0-9]+$ ]] || die "--keep wants a whole number, not '$keep'"
command -v "$secmon" >/dev/null || die "$secmon is not on PATH: install secmon or pass --secmon PATH"
if [ -z "$data_dir" ]; then
    if [ -d /var/lib/secmon ]; then data_dir=/var/lib/secmon; else data_dir=./data; fi
fi
[ -f "$data_dir/secmon.redb" ] || die "$data_dir holds no secmon store (secmon.redb): pass --data-dir"
data_dir=$(cd "$data_dir" && pwd)
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

host=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)
name="secmon-${host}-$(date -u +%Y%m%dT%H%M%SZ).redb"
staging="$data_dir/backups"
# Owned like the data dir, so the daemon (user secmon) may write into it.
if [ ! -d "$staging" ]; then
    mkdir -m 0750 "$staging"
    chown --reference="$data_dir" "$staging" 2>/dev/null || true
fi
trap 'rm -f "$staging/$name" "$staging/$name.sha256" "$dest/.$name.partial" "$dest/.$name.sha256.partial"' EXIT

report=$("$secmon" backup --data-dir "$data_dir" "$staging/$name") \
    || die "secmon backup failed (a backup that does not verify is deleted)"
# Across file systems mv copies: through a hidden name, renamed when whole,
# so DEST never holds (or rotates by) a half-copied backup.
mv "$staging/$name" "$dest/.$name.partial"
mv "$staging/$name.sha256" "$dest/.$name.sha256.partial"
mv "$dest/.$name.sha256.partial" "$dest/$name.sha256"
mv "$dest/.$name.partial" "$dest/$name"
printf '%s\n' "$report" | sed "s|\"target\": \".*\"|\"target\": \"$dest/$name\"|" >"$dest/${name%.redb}.json"

# Rotate: the newest $keep stay.
if [ "$keep" -gt 0 ]; then
    find "$dest" -maxdepth 1 -name 'secmon-*.redb' -printf '%f\n' | sort -r | tail -n +$((keep + 1)) \
        | while read -r old; do rm -f "$dest/$old" "$dest/$old.sha256" "$dest/${old%.redb}.json"; done
fi
events=$(printf '%s\n' "$report" | sed -n 's/.*"events": \([0-9]*\).*/\1/p')
printf 'backup: %s (%s events, verified)\n' "$dest/$name" "$events"
