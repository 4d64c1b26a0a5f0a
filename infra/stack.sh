#!/usr/bin/env bash
# Serves the service API on 127.0.0.1:${SERVICE_PORT:-9000} with moto and the sandboxes behind it
# (whatever the CONTRACTS.md §3 variables do not point elsewhere). Ctrl-C stops all of it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
infra/bootstrap.sh stack
cargo build --quiet -p local-stack --bin local-stack
exec target/debug/local-stack serve
