#!/usr/bin/env bash
# Installs what the project needs on a fresh machine into project-local virtualenvs (.venv/), so that
# nothing has to be installed by hand. Idempotent: a venv is rebuilt only when its requirements change.
#   infra/bootstrap.sh            # stack venv (moto) + tools venv (cfn-lint, cargo-lambda)
#   infra/bootstrap.sh stack      # only what the local stack needs
#   infra/bootstrap.sh fuzz       # the stack venv + schemathesis (infra/fuzz.sh)
#   infra/bootstrap.sh stock      # the stack venv + stock moto_server (BENCH_MOTO=stock make bench)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
what="${1:-all}"

venv() { # name requirements-file
  local name="$1" req="$2" dir="$root/.venv/$1"
  local stamp="$dir/.requirements.sha256"
  # The stamp names the venv's own path too: a venv copied or moved from elsewhere (a worktree)
  # has scripts whose first line names the old path, and must be rebuilt.
  local want; want="$(sha256sum "$req" | cut -d' ' -f1) $dir"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  echo "bootstrap: installing $name venv from ${req#$root/}" >&2
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
}

venv stack "$root/infra/python/requirements-stack.txt"
if [ "$what" = "all" ]; then
  venv tools "$root/infra/python/requirements-tools.txt"
fi
if [ "$what" = "stock" ]; then
  venv stock "$root/infra/python/requirements-stock.txt"
fi
if [ "$what" = "all" ] || [ "$what" = "fuzz" ]; then
  venv fuzz "$root/infra/python/requirements-fuzz.txt"
fi
command -v cargo >/dev/null || { echo "bootstrap: cargo not found (the Rust toolchain is required)" >&2; exit 1; }
