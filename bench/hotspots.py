"""Where the time goes in one bench case: the WSGI app in-process, timed, then under cProfile.

``.venv/bin/python bench/hotspots.py CASE [--requests N] [--sort cumulative|tottime]
[--callers REGEX]``
with CASE one of baseline, key, get100, cli100, get10k, post1000. The data set is the bench's own
(``seed.py``) in a temporary data directory; requests go straight to the WSGI callable (no
sockets, no waitress), so the figures are phase_lite's own cost per request.
"""

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

import orjson
from werkzeug.test import EnvironBuilder

import seed
from baseline import create_baseline_app
from run import CLIENT, KEY, rest_path

CASES = ("baseline", "key", "get100", "cli100", "get10k", "post1000")


def build(workdir: Path, case: str):
    from phase_lite.app import create_app
    from phase_lite.config import load_config

    data_dir = workdir / "data"
    seed.init_data_dir(data_dir)
    layout = seed.create_bench_app(data_dir, ("Development", "Staging", "Large", "Import"))
    app = create_app(load_config({"PHASE_LITE_DATA_DIR": str(data_dir)}))
    auth = {"Authorization": layout.authorization, "User-Agent": "bench"}
    send(app, "POST", rest_path(layout, "Staging"), auth, seed.staging_secrets())
    send(app, "POST", rest_path(layout, "Development"), auth, seed.make_secrets(100))
    if case == "get10k":
        for batch in range(10):
            send(app, "POST", rest_path(layout, "Large"), auth,
                 seed.make_secrets(1000, seed=1000 + batch, prefix=f"LARGE{batch}_"))
    return app, layout, auth


def send(app, method, path, headers, entries=None):
    body = orjson.dumps({"secrets": entries}) if entries is not None else None
    status, payload = call(app, environ_for(method, path, headers, body), body)
    if status != 200:
        raise SystemExit(f"{method} {path} answered {status}: {payload[:200]!r}")
    return payload


def environ_for(method, path, headers, body=None):
    path, _, query = path.partition("?")
    return EnvironBuilder(path=path, query_string=query, method=method, headers=headers,
                          data=body, environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_environ()


def call(app, environ, body=None):
    environ = dict(environ)
    environ["wsgi.input"] = io.BytesIO(body or b"")
    status = []

    def start_response(line, headers, exc_info=None):
        status.append(int(line.split()[0]))

    chunks = app(environ, start_response)
    try:
        payload = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return status[0], payload


def requests_for(case, layout, auth):
    """A function returning (environ, body) for the n-th request of the case."""
    if case == "key":
        environ = environ_for("GET", rest_path(layout, "Development") + f"&key={KEY}", auth)
        return lambda n: (environ, None)
    if case == "get100":
        environ = environ_for("GET", rest_path(layout, "Development"), auth)
        return lambda n: (environ, None)
    if case == "get10k":
        environ = environ_for("GET", rest_path(layout, "Large"), auth)
        return lambda n: (environ, None)
    if case == "cli100":
        headers = {"Authorization": layout.authorization, "User-Agent": "phase-cli/1.21.3",
                   "Environment": layout.environments["Development"], "KeyDigest": "",
                   "Path": "/", "dynamic": "true", "lease": "true"}
        environ = environ_for("GET", CLIENT, headers)
        return lambda n: (environ, None)

    headers = dict(auth, **{"Content-Type": "application/json"})

    def post(n):
        body = orjson.dumps({"secrets": seed.make_secrets(1000, seed=n, prefix=f"P{n}_",
                                                          references=False)})
        return environ_for("POST", rest_path(layout, "Import"), headers, body), body

    return post


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("case", choices=CASES)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--sort", default="tottime", choices=("tottime", "cumulative"))
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--callers", metavar="REGEX",
                        help="also print who calls the functions matching REGEX")
    options = parser.parse_args(argv)
    count = options.requests or {"get10k": 20, "post1000": 5}.get(options.case, 500)
    with tempfile.TemporaryDirectory(prefix="phase-lite-profile-") as workdir:
        if options.case == "baseline":
            app, environ = create_baseline_app(), environ_for("GET", "/", {})
            make = lambda n: (environ, None)  # noqa: E731
        else:
            app, layout, auth = build(Path(workdir), options.case)
            make = requests_for(options.case, layout, auth)
        prepared = [make(n) for n in range(2 * count + 3)]
        for environ, body in prepared[:3]:  # warm caches, as a running server has them
            assert call(app, environ, body)[0] == 200
        started = time.perf_counter()
        for environ, body in prepared[3:count + 3]:
            call(app, environ, body)
        per_request = (time.perf_counter() - started) / count
        print(f"{options.case}: {per_request * 1000:.3f} ms per request in-process "
              f"({count} requests, no profiler)")
        profiler = cProfile.Profile()
        profiler.enable()
        for environ, body in prepared[count + 3:]:
            call(app, environ, body)
        profiler.disable()
        if "phase_lite" in app.extensions:
            app.extensions["phase_lite"].close()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats(options.sort).print_stats(options.limit)
    if options.callers:
        stats.print_callers(options.callers)


if __name__ == "__main__":
    main()
