"""The yardsticks: a bare Flask app on waitress answering a small constant JSON ("hello"), and
a bare WSGI app on waitress answering a given body (the "ceiling").

``python bench/baseline.py HOST:PORT THREADS`` serves hello with the same waitress settings as
``phase-lite serve`` (the thread count is passed in), so a ratio to its req/s measures only
what phase_lite does to build an answer.

``python bench/baseline.py HOST:PORT THREADS BODY_FILE`` serves the bytes of ``BODY_FILE`` as a
JSON answer from a WSGI callable with nothing in front of it: what waitress itself can do with
an answer of that size (the bench gives it phase_lite's own GET 100 answer), the most any
application answering it on waitress could reach.
"""

import logging
import sys
from pathlib import Path

import orjson
import waitress
from flask import Flask, Response

BODY = orjson.dumps({"status": "ok", "message": "constant"})


def create_baseline_app() -> Flask:
    app = Flask("baseline")

    @app.get("/")
    def constant():
        return Response(BODY, mimetype="application/json")

    return app


def create_ceiling_app(body: bytes):
    """A bare WSGI callable answering ``body`` to every request."""
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def ceiling(environ, start_response):
        start_response("200 OK", list(headers))
        return [body]

    return ceiling


def main(argv):
    listen, threads = argv[1], int(argv[2])
    app = create_ceiling_app(Path(argv[3]).read_bytes()) if len(argv) > 3 \
        else create_baseline_app()
    # waitress warns "Task queue depth is N" whenever all threads are busy, which under load
    # is every request: the yardstick must not spend its time writing that to stderr.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    waitress.serve(app, listen=listen, threads=threads, ident="baseline", _quiet=True)


if __name__ == "__main__":
    main(sys.argv)
