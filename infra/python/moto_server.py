"""moto's server, with DynamoDB requests made linearizable, served by waitress.

moto's DynamoDB backend checks a condition and writes in separate steps on whichever request
thread runs, with no lock, so two concurrent conditional writes can both "win" (seen here: lost
list_appends, two winners of one claim). Real DynamoDB never does that, and our exactly-once
guarantees rest on it. This launcher serves the same moto application, but runs DynamoDB requests
one at a time; SQS (long polls) and KMS stay concurrent.

Two things make it fast enough to benchmark the sync engine against (see docs/NOTES.md):
- `moto_fast` (beside this file): moto's DynamoDB item operations read their requests and write
  their answers with plain JSON instead of walking botocore's model, and a few repeated costs are
  cut; MOTO_FAST_VERIFY=1 checks every answer against moto's own encoding.
- waitress instead of werkzeug's development server, which closes the connection after every
  answer (a new TCP connection and thread per request) and logs every request line to the log.

usage: python moto_server.py -H 127.0.0.1 -p PORT
"""

import argparse
import logging
import signal
import sys
import threading

import waitress
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

import moto_fast

# Request threads. SQS long polls (up to 20 s each) hold one apiece: a test run starts a few
# pollers per local stack, so leave room for them and for the DynamoDB/KMS traffic beside them.
THREADS = 64


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

    moto_fast.install()
    inner = DomainDispatcherApplication(create_backend_app)
    dynamo_lock = threading.Lock()

    def app(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with dynamo_lock:
                # Consume the whole answer inside the lock: the write happens while it is built.
                return list(inner(environ, start_response))
        return inner(environ, start_response)

    logging.basicConfig(level=logging.WARNING)
    print(f"moto (DynamoDB linearized) on http://{args.host}:{args.port}", flush=True)
    waitress.serve(
        app,
        host=args.host,
        port=args.port,
        threads=THREADS,
        connection_limit=1000,
        ident="moto",
    )


if __name__ == "__main__":
    main()
