#!/usr/bin/env bash
# Each parser's cost in instructions per line, this tree against BASE (a
# commit), on the same lines: the real lines benches/parse.rs uses, grouped
# by the dataset BASE gives them (so an existing parser is measured on the
# lines it had), plus the datasets only this tree has. Counted by valgrind's
# callgrind, which gives the same number on every run, busy machine or not.
# Prints a table and exits 1 when a parser BASE had costs more than 10%
# more per line.
#
#   scripts/bench-parsers.sh BASE          (e.g. a release tag or a commit)
#
# Needs valgrind. Builds examples/parse_instructions.rs in release mode for
# both trees (BASE in a temporary worktree with its own target directory:
# about 20 minutes for its first build on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
base_rev=${1:?usage: scripts/bench-parsers.sh BASE}
data=../shared/data
reps=20
work=$(mktemp -d /tmp/secmon-bench-parsers.XXXXXX)
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

git worktree add --detach "$work/base" "$base_rev" >/dev/null
mkdir -p "$work/base/examples"
cp examples/parse_instructions.rs "$work/base/examples/"
(cd "$work/base" && CARGO_TARGET_DIR="$work/target" cargo build --release --example parse_instructions >/dev/null)
cargo build --release --example parse_instructions >/dev/null
old="$work/target/release/examples/parse_instructions"
new=target/release/examples/parse_instructions

# The lines of benches/parse.rs's per_dataset group.
files=(
    "$data/loghub/Linux/Linux_2k.log" "$data/loghub/Apache/Apache_2k.log"
    "$data/elastic-beats/filebeat/module/system/auth/test/test.log"
    "$data"/elastic-beats/filebeat/module/auditd/log/test/{test,useradd,execve-hex-arg}.log
    "$data/elastic-beats/filebeat/module/nginx/access/test/test.log"
    "$data/elastic-beats/filebeat/module/apache/access/test/test.log"
)
mapfile -t more < <(find "$data/fail2ban-logs" -maxdepth 1 -type f; find "$data/crowdsec-hub/.tests" -mindepth 2 -maxdepth 2 -name '*.log')
files+=("${more[@]}")

split() { # dataset<TAB>line on stdin -> one file per dataset in $1
    mkdir -p "$1"
    awk -F'\t' -v dir="$1" '{ d = $1; sub(/^[^\t]*\t/, ""); print > (dir "/" d) }'
}
"$old" group "${files[@]}" | split "$work/old"
"$new" group "${files[@]}" | split "$work/new"

instructions() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null | sed -n 's/.*Collected : //p'; }
per_line() { # binary file -> instructions per line of parsing
    local n a b
    n=$(wc -l < "$2")
    a=$(instructions "$1" run "$2" 0)
    b=$(instructions "$1" run "$2" "$reps")
    echo $(( (b - a) / (reps * n) ))
}

status=0
printf '| dataset | lines | %s: instructions/line | this tree | this / base |\n|---|---|---|---|---|\n' "$base_rev"
for f in "$work"/old/*; do
    d=$(basename "$f")
    o=$(per_line "$old" "$f")
    n=$(per_line "$new" "$f")
    ratio=$(python3 -c "print(f'{$n / $o:.3f}')")
    printf '| %s | %s | %s | %s | %s |\n' "$d" "$(wc -l < "$f")" "$o" "$n" "$ratio"
    python3 -c "import sys; sys.exit($n > 1.10 * $o)" || status=1
done
for f in "$work"/new/*; do
    d=$(basename "$f")
    [ -e "$work/old/$d" ] && continue
    printf '| %s (new) | %s | | %s | |\n' "$d" "$(wc -l < "$f")" "$(per_line "$new" "$f")"
done
exit $status
