#!/usr/bin/env bash
# Checks the port plan (config/ports.yaml and the effective configuration)
# against the deployment rules. Usage: scripts/validate-ports.sh [development|production]
# Uses an installed `secmon` when there is one, else builds it from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v secmon >/dev/null; then
    exec secmon validate-ports --config config "$@"
fi
exec cargo run --quiet --release -- validate-ports --config config "$@"
