"""The access log and the log format: WSGI middleware around the whole app.

One line per request: the time, the client address, the method, the path without its query
string, the status, the body's bytes, the duration and the caller's account id. Query values,
headers, key names, values and tokens never reach it. The same recorder hands each request's
route, status and duration to the metrics.

``PHASE_LITE_LOG_FORMAT=json`` writes every log record as one JSON object per line: request
lines, and records logged with one dict argument (the start and stop lines), carry their
fields as the object's keys.
"""

import logging
import os
import re
import sys
import threading
import time
from collections import deque
from time import perf_counter
from urllib.parse import quote

import orjson

from .request_context import PRINCIPAL as PRINCIPAL_KEY
from .request_context import SERVICES as SERVICES_KEY
from .request_context import bind, client_ip, peer_address

ACCESS_LOGGER = "phase_lite.access"
ROUTE_KEY = "phase_lite.route"  # the URL rule Flask dispatched the request to (app.PhaseFlask)
UNMATCHED = "unmatched"  # the route label of a request that matched no URL rule
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
PATH_SAFE = "/-._~!$&'()*+,;=:@"


class AccessLog:
    """Queue each request's raw fields in ``recorder`` (an ``AccessLogWriter``), which writes
    its line and hands its route, method, status and duration to the metrics.

    A request pays for one tuple and one append: reading the status, choosing the labels,
    checking the client address and formatting happen in the recorder's thread, in batches.
    """

    def __init__(self, wsgi_app, flask_app, recorder: "AccessLogWriter"):
        self.wsgi_app = wsgi_app
        self.services = flask_app.extensions["phase_lite"]
        self.add = recorder.add
        self.proxies = bool(self.services.config.trusted_proxies)

    def __call__(self, environ, start_response):
        started = perf_counter()
        path = environ.get("PATH_INFO", "")  # as sent, before the prefixes are stripped
        answer = []

        def start_recorded(status, headers, exc_info=None):
            check_sendable(headers)
            answer[:] = (status, headers)
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, start_recorded)
        except BaseException:
            self.record(environ, path, "500", 0, started)
            raise
        if answer:
            length = content_length(answer[1])
            if length is not None:
                self.record(environ, path, answer[0], length, started)
                return body
        return CountedBody(body, lambda sent, failed: self.record(
            environ, path, answer[0] if answer and not failed else "500", sent, started))

    def record(self, environ, path, status, sent, started):
        """Queue the request: ``status`` is its status line, ``sent`` its body's length."""
        caller = environ.get(PRINCIPAL_KEY)
        if self.proxies:  # the forwarding headers are in the environ: read them now
            if SERVICES_KEY not in environ:  # answered before PrefixMiddleware (/metrics)
                bind(environ, self.services)
            client = client_ip(environ)
        else:
            client = environ.get("REMOTE_ADDR")  # checked by the recorder
        self.add((time.time(), perf_counter() - started, environ.get("REQUEST_METHOD", ""),
                  path, environ.get("PATH_INFO"), environ.get(ROUTE_KEY), status, sent,
                  caller.account_id if caller is not None else "-", client))


def check_sendable(headers):
    """Raise UnicodeEncodeError for a header the server cannot send (PEP 3333: Latin-1).

    Waitress would fail on it only while writing the answer, after this middleware had
    recorded the status the app chose; raised here, the app's failure is the 500 that the
    server sends and that the log records."""
    for name, value in headers:
        if not value.isascii():
            value.encode("latin-1")


def content_length(headers):
    """The Content-Length of an answer's headers, or None."""
    for name, value in headers:
        if name == "Content-Length":
            return value
    for name, value in headers:
        if name.lower() == "content-length":
            return value
    return None


class AccessLogWriter:
    """The recorder of requests: their lines, formatted as the log records around them and
    written in batches, and their figures for the metrics.

    A request only queues its raw fields (``AccessLog``). A background thread takes what is
    waiting every ``interval`` seconds (sooner past ``batch`` requests), hands the figures to
    ``observe`` (``RequestFigures.observe_all``: labels, never taken from what a client wrote,
    are the URL rule the request matched, ``/v1/apps/<app_id>/``, or ``unmatched``, and one of
    ``METHODS`` or ``OTHER``) and, with ``lines``, writes the lines with one ``write``: a
    write per request would release the interpreter lock on every answer, and under load the
    threads then queue for it (a record, a formatter and a flush of the logging module cost
    more than answering a cached GET). ``flush`` does it now; a scrape of the metrics first
    calls ``count_waiting``, which counts without writing. ``close`` stops the thread after a
    last flush. Past ``backlog`` waiting requests or lines (standard error blocked), the oldest
    are dropped rather than memory growing. ``plain_rules``: the paths (prefixes stripped) of requests answered before Flask routes
    them that are their own route label (rules without variables).
    """

    def __init__(self, log_format="text", stream=None, interval=0.2, batch=512, backlog=65536,
                 *, lines=True, observe=None, plain_rules=frozenset()):
        self.json = log_format == "json"
        stream = stream or sys.stderr
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        if fd is not None:
            self.write = lambda data: os.write(fd, data)
        else:
            self.write = lambda data: (stream.write(data.decode()), stream.flush())
        self.lines = lines
        self.observe = observe
        self.plain_rules = plain_rules
        self.interval = interval
        self.batch = batch
        # append and popleft are atomic: no lock needed
        self._waiting = deque(maxlen=backlog)  # raw fields, as requests queue them
        self._unwritten = deque(maxlen=backlog)  # counted, their lines not yet written
        self._wake = threading.Event()
        self._counting = threading.Lock()
        self._writing = threading.Lock()
        self._thread = None
        self._closed = False
        self._second = (0, "")

    def add(self, request):
        """Queue one request's raw fields (``AccessLog.record``)."""
        self._waiting.append(request)
        if self._thread is None and not self._closed:
            self._start()
        elif len(self._waiting) == self.batch:
            self._wake.set()

    def _start(self):
        with self._counting:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
                self._thread.start()

    def _run(self):
        while not self._closed:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self):
        """Record every waiting request: its figures, then its line."""
        self.count_waiting()
        with self._writing:
            unwritten = self._unwritten
            lines = [self.format(*unwritten.popleft()) for _ in range(len(unwritten))]
            if lines:
                try:
                    self.write(b"".join(lines))
                except OSError:
                    pass  # a full or closed standard error must not stop the server

    def count_waiting(self):
        """Hand the figures of every waiting request to ``observe`` and keep their lines for
        the next write: a scrape of the metrics calls this, and never waits for standard
        error."""
        with self._counting:
            waiting = self._waiting
            taken = [waiting.popleft() for _ in range(len(waiting))]
            if not taken:
                return
            figures, lines = [], []
            for (now, seconds, method, path, stripped, route, status, sent, account,
                 client) in taken:
                status = int(status[:3])
                if method not in METHODS:
                    method = "OTHER"
                if route is None:
                    route = (stripped if status < 400 and stripped in self.plain_rules
                             else UNMATCHED)
                figures.append((route, method, status, seconds))
                lines.append((now, client, method, path, status, sent, seconds, account))
            if self.observe is not None:
                self.observe(figures)
            if self.lines:
                self._unwritten.extend(lines)

    def close(self):
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()

    def format(self, now, client, method, path, status, sent, seconds, account) -> bytes:
        stamp = self.timestamp(now)
        client = peer_address(client) or "-"
        path = loggable_path(path)
        sent = int(sent)
        if self.json:
            return orjson.dumps({
                "time": stamp, "level": "INFO", "logger": ACCESS_LOGGER, "event": "request",
                "client": client, "method": method, "path": path, "status": status,
                "bytes": sent, "duration_ms": round(seconds * 1000, 3), "account": account,
            }) + b"\n"
        return (f'{stamp} INFO {ACCESS_LOGGER} {client} "{method} {path}" {status} {sent} '
                f"{seconds * 1000:.2f}ms account={account}\n").encode()

    def timestamp(self, now: float) -> str:
        second = int(now)
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{self._second[1]}.{int((now - second) * 1000):03d}Z"


# Paths whose last part is a bearer capability (a Lockbox link's id), written with a
# placeholder: anyone reading the log could otherwise open the share. One rule for the REST
# route and the share page under every prefix ``PrefixMiddleware`` strips (``/service``, then
# ``/public``). A share's own id (``/v1/lockbox/shares/<id>/``, a revocation) opens nothing
# and is written as it is.
CAPABILITY_PATHS = re.compile(
    r"^((?:/service)?(?:/public)?(?:/v1)?/lockbox/(?!shares/))[^/]+")


def loggable_path(path: str) -> str:
    """The path as one printable token (anything else percent-encoded), a capability in it
    replaced by ``{id}``."""
    if "lockbox/" in path:  # (a substring test first: the expression costs more than a line)
        path = CAPABILITY_PATHS.sub(r"\1{id}", path)
    if path.isascii() and path.isprintable() and " " not in path and '"' not in path:
        return path
    return quote(path.encode("latin-1", "replace"), safe=PATH_SAFE)


class CountedBody:
    """A response body that counts the bytes sent and reports them when closed."""

    def __init__(self, body, report):
        self.body = body
        self.report = report
        self.sent = 0
        self.failed = False

    def __iter__(self):
        try:
            for chunk in self.body:
                self.sent += len(chunk)
                yield chunk
        except Exception:
            self.failed = True  # the server answers 500 (or cuts the answer short)
            raise

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.report(self.sent, self.failed)


# -- the log format ----------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """``<UTC time> <level> <logger> <message>``."""

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")


class JsonFormatter(TextFormatter):
    """One JSON object per record: time, level, logger, then the fields or the message."""

    def format(self, record):
        entry = {"time": self.formatTime(record), "level": record.levelname,
                 "logger": record.name}
        if isinstance(record.args, dict):
            entry.update(record.args)
            if entry.get("event") != "request":
                entry["message"] = record.getMessage()
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(config, stream=None) -> None:
    """Send every log record to standard error in the configured format and level.

    The access log (``AccessLogWriter``) and the start and stop lines are written whatever
    the level.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.log_level)
    logging.getLogger("phase_lite.server").setLevel(logging.INFO)
    # waitress warns "Task queue depth is N" whenever all threads are busy, which under load is
    # every request: writing that to stderr would cost more than answering.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
