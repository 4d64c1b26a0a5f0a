"""moto's server, with DynamoDB requests made linearizable.

moto's DynamoDB backend checks a condition and writes in separate steps on whichever request
thread runs, with no lock, so two concurrent conditional writes can both "win" (seen here: lost
list_appends, two winners of one claim). Real DynamoDB never does that, and our exactly-once
guarantees rest on it. This launcher serves the same moto application, but runs DynamoDB requests
one at a time; SQS (long polls) and KMS stay concurrent.

usage: python moto_server.py -H 127.0.0.1 -p PORT
"""

import argparse
import signal
import sys
import threading

from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))

    inner = DomainDispatcherApplication(create_backend_app)
    dynamo_lock = threading.Lock()

    def app(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with dynamo_lock:
                # Consume the whole answer inside the lock: the write happens while it is built.
                return list(inner(environ, start_response))
        return inner(environ, start_response)

    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
