#!/usr/bin/env bash
# The main job, locally (README, first command): installs the local stack's needs, builds, and runs
# the whole flow against the sandboxes (connect, full sync, order push, incremental sync), printing
# what it did. Any variable of CONTRACTS.md §3 that is set is used as given.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
infra/bootstrap.sh stack
cargo build --quiet -p local-stack --bin local-stack
exec target/debug/local-stack demo
