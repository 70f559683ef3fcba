"""The yardstick: a bare Flask app on waitress answering a small constant JSON.

``python bench/baseline.py HOST:PORT THREADS`` serves it with the same waitress settings as
``phase-lite serve`` (the thread count is passed in), so a ratio to its req/s measures only
what phase_lite does to build an answer.
"""

import logging
import sys

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


def main(argv):
    listen, threads = argv[1], int(argv[2])
    # waitress warns "Task queue depth is N" whenever all threads are busy, which under load
    # is every request: the yardstick must not spend its time writing that to stderr.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    waitress.serve(create_baseline_app(), listen=listen, threads=threads, ident="baseline",
                   _quiet=True)


if __name__ == "__main__":
    main(sys.argv)
