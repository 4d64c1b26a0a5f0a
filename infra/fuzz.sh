#!/usr/bin/env bash
# Schema-driven fuzzing of the service API: schemathesis generates requests from
# docs/openapi/service-api.yaml (valid and invalid bodies, path and query values, missing and wrong
# tokens) against the local stack (`local-stack serve`: moto + sandboxes, all on loopback) and
# fails on any 5xx answer and on any answer the document does not describe.
#
#   infra/fuzz.sh                       # every route, FUZZ_EXAMPLES (default 50) cases per route
#   FUZZ_ROUTES='connection' infra/fuzz.sh   # only paths matching this regex
#
# Uses MOTO_ENDPOINT when set (the test command's moto), else starts its own moto; stops what it
# started, by PID. Bounded: about one minute on two cores after the build. `make test` runs it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
examples="${FUZZ_EXAMPLES:-50}"
routes="${FUZZ_ROUTES:-.}"
seed="${FUZZ_SEED:-20261129}"
state="$root/.local/fuzz"
mkdir -p "$state"

infra/bootstrap.sh fuzz
# What `make test` builds (tests and bins of the workspace, one feature set), so after it nothing
# is compiled again; `-p local-stack` alone would resolve features differently and rebuild the deps.
cargo build --quiet --workspace --bins --tests

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # port seconds
  for _ in $(seq 1 $(($2 * 10))); do
    if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

stack_pid=""
own_moto=""
cleanup() {
  if [ -n "$stack_pid" ]; then
    kill -INT "$stack_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$stack_pid" 2>/dev/null || break; sleep 0.1; done
    kill "$stack_pid" 2>/dev/null || true
  fi
  if [ -n "$own_moto" ]; then MOTO_PIDFILE="$state/moto.pid" infra/moto.sh stop; fi
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}" \
       AWS_REGION="${AWS_REGION:-ap-southeast-1}" AWS_EC2_METADATA_DISABLED=true
if [ -n "${MOTO_ENDPOINT:-}" ]; then
  aws="$MOTO_ENDPOINT"
else
  aws="$(MOTO_PIDFILE="$state/moto.pid" MOTO_LOG="$state/moto.log" infra/moto.sh start)"
  own_moto=1
fi

# Its own table, key and queues (a unique name), so a shared moto meets nobody else's data.
port="$(free_port)"
admin_token="fuzz-admin-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
SERVICE_PORT="$port" AWS_ENDPOINT_URL="$aws" ADMIN_TOKEN="$admin_token" \
  TABLE_NAME="kiotviet-fnb-sync-fuzz-$$" RUST_LOG="${RUST_LOG:-warn}" \
  target/debug/local-stack serve >"$state/stack.log" 2>&1 &
stack_pid=$!
if ! wait_port "$port" 60; then
  echo "fuzz: the local stack did not come up; see $state/stack.log" >&2
  exit 1
fi
api="http://127.0.0.1:$port"
echo "fuzz: service API at $api (log: $state/stack.log), AWS stand-in at $aws"

# One connected shop, so the routes that need a connection get past 404 too (the document's
# examples name it; the sandbox's credentials are the ones in connection examples).
status="$(python3 - "$api" "$admin_token" <<'PY'
import json, sys, urllib.request
api, token = sys.argv[1], sys.argv[2]
body = {"account_type": "fnb", "retailer": "testfnbz15xyz", "client_id": "demo-client",
        "client_secret": "demo-secret", "branch_id": 233443,
        "sync": {"products": True, "customers": True, "orders": True},
        "keep_app_product_status": True, "invoice_history_days": 30}
req = urllib.request.Request(f"{api}/v1/shops/fuzz-shop/connection", method="PUT",
                             data=json.dumps(body).encode(),
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(req, timeout=30).status)
except urllib.error.HTTPError as e:
    print(e.code)
PY
)"
if [ "$status" != "200" ]; then
  echo "fuzz: could not connect the example shop (HTTP $status); see $state/stack.log" >&2
  exit 1
fi

# not_a_server_error: no 5xx. status_code_conformance / response_schema_conformance /
# response_headers_conformance / content_type_conformance: every answer is one the document
# lists, in its shape. ignored_auth: no token, no answer. unsupported_method: 405 (with Allow).
# negative_data_rejection: what the document forbids is refused. (positive_data_acceptance is
# left out: schema-valid bodies are refused for business reasons — unknown products, wrong
# credentials — which the document lists as 422s.) Workers 1: two cores are shared with the build.
fuzz() { # label config-file [schemathesis run options…]
  local label="$1" config="$2"; shift 2
  echo "== fuzz: $label =="
  # From the state folder: schemathesis keeps its cache (.schemathesis/) where it runs.
  (cd "$state" && "$root/.venv/fuzz/bin/schemathesis" --no-color --config-file "$config" \
    run "$root/docs/openapi/service-api.yaml" \
    --url "$api" \
    --header "Authorization: Bearer $admin_token" \
    --checks "${FUZZ_CHECKS:-not_a_server_error,status_code_conformance,response_schema_conformance,response_headers_conformance,content_type_conformance,ignored_auth,unsupported_method,negative_data_rejection}" \
    --include-path-regex "$routes" \
    --phases examples,coverage,fuzzing \
    --max-examples "$examples" \
    --seed "$seed" \
    --workers 1 \
    --request-timeout 20 \
    --suppress-health-check all \
    --generation-database none \
    --report junit --report-dir "$state/report-$label" \
    "$@")
}
rc=0
passed=0
failed=0
count() { if [ "$1" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); rc=1; fi; }
# 1. Any shop id, any body: routing, shop-id checks, auth and parsing.
printf '' >"$state/any-shop.toml"
r=0; fuzz any-shop "$state/any-shop.toml" || r=$?; count "$r"
# 2. The connected shop: bodies reach the rules, the live check, the pushes and the runs. DELETE
#    is left out so the shop stays connected for the rest.
cat >"$state/connected-shop.toml" <<'TOML'
[parameters]
"path.shop_id" = "fuzz-shop"
TOML
r=0; fuzz connected-shop "$state/connected-shop.toml" --exclude-method DELETE || r=$?; count "$r"

# A fault the answers hid (a 4xx after an internal error) still fails the run.
if grep -q '"level":"ERROR"' "$state/stack.log"; then
  echo "fuzz: the service logged errors:" >&2
  grep '"level":"ERROR"' "$state/stack.log" | head -20 >&2
  failed=$((failed + 1)); rc=1
else
  passed=$((passed + 1))
fi
echo "fuzz: $passed passed, $failed failed"
exit "$rc"
