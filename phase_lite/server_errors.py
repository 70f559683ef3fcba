"""waitress's own refusals (body or headers too large, malformed requests) in Phase's error shape,
and keep-alive after an answer that has no body.

waitress answers these before the application sees the request, with a plain-text page. A
channel class whose error task writes ``{"error": "..."}`` (and the security headers every other
answer carries) keeps the one error shape, whoever refuses.

waitress also closes the connection after every HTTP/1.1 answer without a ``Content-Length``,
and it drops the ``Content-Length`` of an answer that has no body by its status (1xx, 204,
304), so a client revalidating with ``If-None-Match`` reconnects after each 304. Such an
answer ends with its headers (RFC 9112, 6.3): the channel's task keeps the connection open
after it unless the client asked to close it.
"""

import json

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask, WSGITask

from .api import HTTP_MESSAGES, SECURITY_HEADERS

MESSAGES = HTTP_MESSAGES | {
    400: "Bad request.",
    431: "Request header fields too large.",
    500: "Internal server error.",
    501: "Not implemented.",
}


class JSONErrorTask(ErrorTask):
    def execute(self):
        error = self.request.error
        body = json.dumps({"error": MESSAGES.get(error.code, error.reason)}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"),
                                      *SECURITY_HEADERS])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class KeepAliveTask(WSGITask):
    """The WSGI task that does not close an HTTP/1.1 connection after a body-less answer."""

    _bodiless = False

    def build_response_header(self):
        if (self.has_body or self.version != "1.1" or self.close_on_finish
                or self.request.headers.get("CONNECTION", "").lower() == "close"):
            return super().build_response_header()
        # waitress would close it for want of a Content-Length, which this answer may not have.
        self._bodiless = True
        try:
            return super().build_response_header()
        finally:
            self._bodiless = False

    def set_close_on_finish(self) -> None:
        if not self._bodiless:
            super().set_close_on_finish()


class JSONErrorChannel(HTTPChannel):
    error_task_class = JSONErrorTask
    task_class = KeepAliveTask


def answer_refusals_as_json(server):
    """Give the bound waitress ``server`` (one listener or several) the JSON error channel
    (which also keeps connections open after body-less answers)."""
    sockets = getattr(server, "map", None) or server._map
    for dispatcher in [server, *sockets.values()]:
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = JSONErrorChannel
