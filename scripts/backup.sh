#!/usr/bin/env bash
# A verified, rotated backup of a secmon node: `secmon backup` (an online,
# consistent copy taken by the running daemon, or offline when none runs),
# checked by restoring it into a scratch data dir, kept as the newest of N.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/backup.sh [--keep N] [--data-dir DIR] [--secmon PATH] DEST

Writes DEST/secmon-<host>-<UTC time>.redb and DEST/<same>.json (what the
backup holds: events, last sequence number, bytes), then:
  - verifies it: restores it into a scratch data dir and compares the event
    count and last sequence number with what the backup reported;
  - keeps the newest N backups in DEST (default 7) and deletes older ones.

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
scratch=$(mktemp -d "${TMPDIR:-/tmp}/secmon-verify.XXXXXX")
trap 'rm -rf "$scratch"; rm -f "$staging/$name"' EXIT

"$secmon" backup --data-dir "$data_dir" "$staging/$name" >"$scratch/report.json" \
    || die "secmon backup failed"
mv "$staging/$name" "$dest/$name.partial"

# Verify: the copy opens as a store and holds what the backup reported.
field() { sed -n "s/.*\"$1\": \\([0-9]*\\).*/\\1/p" "$2"; }
"$secmon" restore --data-dir "$scratch/data" "$dest/$name.partial" >"$scratch/restored.json" 2>"$scratch/restore.log" \
    || { rm -f "$dest/$name.partial"; die "the backup does not restore: deleted it"; }
for f in events last_seq; do
    [ "$(field "$f" "$scratch/report.json")" = "$(field "$f" "$scratch/restored.json")" ] \
        || { rm -f "$dest/$name.partial"; die "the restored copy's $f differs from the backup's: deleted it"; }
done
mv "$dest/$name.partial" "$dest/$name"
sed "s|\"path\": \".*\"|\"path\": \"$dest/$name\"|" "$scratch/report.json" >"$dest/${name%.redb}.json"

# Rotate: the newest $keep stay.
if [ "$keep" -gt 0 ]; then
    find "$dest" -maxdepth 1 -name 'secmon-*.redb' -printf '%f\n' | sort -r | tail -n +$((keep + 1)) \
        | while read -r old; do rm -f "$dest/$old" "$dest/${old%.redb}.json"; done
fi
printf 'backup: %s (%s events, verified)\n' "$dest/$name" "$(field events "$scratch/report.json")"
