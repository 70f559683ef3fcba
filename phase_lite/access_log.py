"""The access log and the log format: WSGI middleware around the whole app.

One line per request: the time, the client address, the method, the path without its query
string, the status, the body's bytes, the duration and the caller's account id. Query values,
headers, key names, values and tokens never reach it. The same middleware hands each request's
route, status and duration to the metrics.

``PHASE_LITE_LOG_FORMAT=json`` writes every log record as one JSON object per line: request
lines, and records logged with one dict argument (the start and stop lines), carry their
fields as the object's keys.
"""

import logging
import os
import sys
import time
from urllib.parse import quote

import orjson

from .api.context import _PRINCIPAL as PRINCIPAL_KEY
from .api.context import bind, client_ip

ACCESS_LOGGER = "phase_lite.access"
ROUTE_KEY = "phase_lite.route"  # the URL rule Flask dispatched the request to (app.PhaseFlask)
UNMATCHED = "unmatched"  # the route label of a request that matched no URL rule
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
PATH_SAFE = "/-._~!$&'()*+,;=:@"


class AccessLog:
    """Write each request to ``lines`` (an ``AccessLogWriter``, or None) and pass it to
    ``observe`` (the metrics).

    ``observe(route, method, status, seconds)``: ``route`` is the URL rule the request matched
    (``/v1/apps/<app_id>/``) or ``unmatched``, ``method`` one of ``METHODS`` or ``OTHER``:
    labels never taken from what a client wrote.
    """

    def __init__(self, wsgi_app, flask_app, *, lines=None, observe=None, routes=()):
        self.wsgi_app = wsgi_app
        self.flask_app = flask_app
        self.lines = lines
        self.observe = observe
        # Requests answered before Flask routes them carry no URL rule: their path (once the
        # prefixes are stripped) is a rule without variables, or one of ``routes``.
        self.plain_rules = frozenset(rule.rule for rule in flask_app.url_map.iter_rules()
                                     if not rule.arguments).union(routes)

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        path = environ.get("PATH_INFO", "")  # as sent, before the prefixes are stripped
        answer = []

        def start_recorded(status, headers, exc_info=None):
            length = None
            for name, value in headers:
                if name == "Content-Length" or name.lower() == "content-length":
                    length = value
                    break
            answer[:] = (status, length)
            return start_response(status, headers, exc_info)

        try:
            body = self.wsgi_app(environ, start_recorded)
        except BaseException:
            self.record(environ, path, 500, 0, started)
            raise
        if answer and answer[1] is not None:
            self.record(environ, path, int(answer[0][:3]), int(answer[1]), started)
            return body
        return CountedBody(body, lambda sent: self.record(
            environ, path, int(answer[0][:3]) if answer else 500, sent, started))

    def record(self, environ, path, status, sent, started):
        seconds = time.perf_counter() - started
        method = environ.get("REQUEST_METHOD", "")
        if method not in METHODS:
            method = "OTHER"
        if self.observe is not None:
            self.observe(self.route(environ, status), method, status, seconds)
        if self.lines is not None:
            caller = environ.get(PRINCIPAL_KEY)
            bind(environ, self.flask_app)
            self.lines.request(client_ip(environ) or "-", method, loggable_path(path), status,
                               sent, seconds, caller.account_id if caller is not None else "-")

    def route(self, environ, status) -> str:
        found = environ.get(ROUTE_KEY)
        if found is not None:
            return found
        path = environ.get("PATH_INFO")
        return path if status < 400 and path in self.plain_rules else UNMATCHED


class AccessLogWriter:
    """Format request lines as the log records around them look, and write each at once.

    The request path skips the logging module (a record, a formatter and a flush cost as much
    as answering a cached GET): one formatted line, one ``write``.
    """

    def __init__(self, log_format="text", stream=None):
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
        self._second = (0, "")

    def timestamp(self, now: float) -> str:
        second = int(now)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S",
                                                           time.gmtime(second)))
        return f"{cached[1]}.{int((now - second) * 1000):03d}Z"

    def request(self, client, method, path, status, sent, seconds, account):
        stamp = self.timestamp(time.time())
        if self.json:
            line = orjson.dumps({
                "time": stamp, "level": "INFO", "logger": ACCESS_LOGGER, "event": "request",
                "client": client, "method": method, "path": path, "status": status,
                "bytes": sent, "duration_ms": round(seconds * 1000, 3), "account": account,
            }) + b"\n"
        else:
            line = (f'{stamp} INFO {ACCESS_LOGGER} {client} "{method} {path}" {status} {sent} '
                    f"{seconds * 1000:.2f}ms account={account}\n").encode()
        try:
            self.write(line)
        except OSError:
            pass  # a full or closed standard error must not fail the request


def loggable_path(path: str) -> str:
    """The path as one printable token: anything else is percent-encoded."""
    if path.isascii() and path.isprintable() and " " not in path and '"' not in path:
        return path
    return quote(path.encode("latin-1", "replace"), safe=PATH_SAFE)


class CountedBody:
    """A response body that counts the bytes sent and reports them when closed."""

    def __init__(self, body, report):
        self.body = body
        self.report = report
        self.sent = 0

    def __iter__(self):
        for chunk in self.body:
            self.sent += len(chunk)
            yield chunk

    def close(self):
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.report(self.sent)


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
