"""waitress's own refusals (body or headers too large, malformed requests) in Phase's error shape.

waitress answers these before the application sees the request, with a plain-text page. A
channel class whose error task writes ``{"error": "..."}`` (and the security headers every other
answer carries) keeps the one error shape, whoever refuses.
"""

import json

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer
from waitress.task import ErrorTask

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


class JSONErrorChannel(HTTPChannel):
    error_task_class = JSONErrorTask


def answer_refusals_as_json(server):
    """Give the bound waitress ``server`` (one listener or several) the JSON error channel."""
    sockets = getattr(server, "map", None) or server._map
    for dispatcher in [server, *sockets.values()]:
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = JSONErrorChannel
