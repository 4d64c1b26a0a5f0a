#!/usr/bin/env bash
# The test command (README, second command; .ci/run calls exactly this): installs what it needs,
# then format, lint, unit tests, end-to-end tests against real local servers, template validation.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
step() { printf '\n== %s ==\n' "$*"; }

step "bootstrap (project venvs: moto, cfn-lint, cargo-lambda)"
infra/bootstrap.sh all

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "template.yaml validation (cfn-lint, informational checks included)"
.venv/tools/bin/cfn-lint --include-checks I -- template.yaml

# The two HTTP interfaces we own (CONTRACTS.md). openapi-spec-validator comes with moto[server];
# the end-to-end tests then hold requests and answers to these documents (tests/e2e/src/contract.rs).
step "OpenAPI documents (openapi-spec-validator)"
.venv/stack/bin/openapi-spec-validator docs/openapi/service-api.yaml docs/openapi/abaha-sync-api.yaml

# About a minute: schemathesis against the local API and docs/openapi/service-api.yaml — no 5xx,
# every answer as documented, auth enforced, forbidden input refused (README "Fuzzing the service API").
step "schema-driven fuzzing of the service API (infra/fuzz.sh)"
infra/fuzz.sh

step "start moto (DynamoDB/SQS/KMS stand-in) on loopback"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=ap-southeast-1 \
       AWS_DEFAULT_REGION=ap-southeast-1 AWS_EC2_METADATA_DISABLED=true
MOTO_ENDPOINT="$(infra/moto.sh start)"
export MOTO_ENDPOINT
trap 'infra/moto.sh stop' EXIT
echo "moto at $MOTO_ENDPOINT"
# Tests that need moto fail without it (store::testing::moto_or_skip), never pass silently.

# Last, so that the test runner's own summary closes the output.
step "unit + end-to-end tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
