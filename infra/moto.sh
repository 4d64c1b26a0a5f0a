#!/usr/bin/env bash
# Starts / stops the project's moto server (DynamoDB, SQS, KMS stand-in) on loopback, by PID file.
#   infra/moto.sh start [PORT]   -> prints the endpoint URL
#   infra/moto.sh stop
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
state="$root/.local"; mkdir -p "$state"
# MOTO_PIDFILE / MOTO_LOG let a second moto (infra/fuzz.sh) run beside the test command's.
pidfile="${MOTO_PIDFILE:-$state/moto.pid}"
log="${MOTO_LOG:-$state/moto.log}"
case "${1:-}" in
  start)
    port="${2:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
    # Our launcher: moto's server with DynamoDB requests linearized (see the script's docstring).
    "$root/.venv/stack/bin/python" "$root/infra/python/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do
      if python3 - "$port" <<'PY' 2>/dev/null; then break; fi
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()
PY
      sleep 0.1
    done
    echo "http://127.0.0.1:$port"
    ;;
  stop)
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
    ;;
  *) echo "usage: infra/moto.sh start [PORT] | stop" >&2; exit 2 ;;
esac
