"""The HTTP layer: flask-smorest blueprints, Phase's URL prefixes, one error shape.

Phase mounts its public routes at ``/`` and ``/public/``, and strips a leading ``/service``
from every path (``ServicePrefixMiddleware``), so ``/service/public/v1/secrets/``,
``/public/v1/secrets/``, ``/service/v1/secrets/`` and ``/v1/secrets/`` are one route. The
``PrefixMiddleware`` below does the same before Flask routes the request. Every 4xx/5xx body is
``{"error": "..."}``, Flask's own 404/405/413/500 included.
"""

import io
import logging

import orjson
from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import get_content_length

from .. import errors
from ..auth import NO_CREDENTIALS
from ..schemas import Error
from ..store import StoreError
from ..vault import DecryptionFailed
from ..request_context import bind

log = logging.getLogger("phase_lite.api")

PUBLIC_FLAG = "phase_lite.public_prefix"
SECURITY_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"))
HTTP_MESSAGES = {
    404: "Not found.",
    413: "Request body is too large.",
}


class PrefixMiddleware:
    """Strip ``/service`` then ``/public`` from the path, as Phase's routing does.

    Also, for every request and before any routing (cheaper here than as Flask hooks, which
    every request would pay for): attach the app's services (``context.bind``), refuse a
    declared body over ``MAX_CONTENT_LENGTH`` with 413, add ``SECURITY_HEADERS`` to every
    answer that does not set them, and offer a GET to the ``direct_gets`` of its path first.

    A direct GET (``{path: answer(environ) -> (body, headers)}``, from the blueprint modules'
    ``DIRECT_GETS``) runs the view's own steps (``pipeline``) and read on the WSGI environ and
    returns the JSON body of a successful answer with its extra headers (a body of None: 304
    Not Modified); anything it raises sends the request to Flask, which runs the same steps
    from the start and answers with its handlers. Flask's request machinery costs as much as
    answering a cached read, and every deploy and ``phase run`` is one. While any request hook
    is registered beyond the app's own (a ``before_request`` added after ``create_app``, say),
    every request goes through Flask, so no hook is ever skipped.
    """

    def __init__(self, wsgi_app, app, services, direct_gets=None):
        self.wsgi_app = wsgi_app
        self.app = app
        self.services = services
        self.direct_gets = dict(direct_gets or {})
        self._own_hooks = None
        self._handed_kinds = set()

    def seal(self):
        """Remember the request hooks registered now: the app's own, which the direct GETs
        already honour."""
        self._own_hooks = self._hooks()

    def _hooks(self):
        app = self.app
        return (_count(app.before_request_funcs), _count(app.after_request_funcs),
                _count(app.teardown_request_funcs), _count(app.url_value_preprocessors),
                _count(app.url_default_functions))

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/service" or path.startswith("/service/"):
            path = path[len("/service"):] or "/"
        if path == "/public" or path.startswith("/public/"):
            path = path[len("/public"):] or "/"
            environ[PUBLIC_FLAG] = True
        environ["PATH_INFO"] = path
        bind(environ, self.services)

        length = get_content_length(environ)
        if length is not None and length > self.app.config["MAX_CONTENT_LENGTH"]:
            return error_response(HTTP_MESSAGES[413], 413)(environ, _secured(start_response))
        direct = self.direct_gets.get(path) if environ.get("REQUEST_METHOD") == "GET" else None
        if direct is not None and self._hooks() == self._own_hooks:
            try:
                body, headers = direct(environ)
            except Exception as exc:  # noqa: BLE001 - Flask runs the same steps and answers it
                self._handed_to_flask(path, exc)
            else:
                return _json_body(environ, start_response, body, headers)
        return self.wsgi_app(environ, _secured(start_response))

    def _handed_to_flask(self, path, exc):
        """Say at debug level, once per kind of exception, that the fast path left a GET to
        Flask: a refusal (401, 404, 429...) is answered there, and anything else shows here
        first. Only the route's path and the exception's class are written, never a value,
        a query or a token."""
        kind = exc.__class__.__name__
        if kind not in self._handed_kinds:
            self._handed_kinds.add(kind)
            log.debug("fast path: GET %s handed to Flask on %s (said once per kind)", path,
                      kind)


def _count(hooks: dict) -> int:
    return sum(map(len, hooks.values()))


def _secured(start_response):
    """``start_response`` adding the ``SECURITY_HEADERS`` an answer does not set itself."""
    def start_secured(status, headers, exc_info=None):
        present = {name.lower() for name, _ in headers}
        headers.extend(item for item in SECURITY_HEADERS if item[0].lower() not in present)
        return start_response(status, headers, exc_info)
    return start_secured


STREAM_FROM = 1 << 20  # bytes: a larger body is handed to the server as a file, not copied


def _json_body(environ, start_response, body: bytes | None, headers=()):
    """Answer 200 with an encoded JSON body, as ``encoded_json_response`` would (a body of
    None: 304 Not Modified, as ``not_modified``), with the ``SECURITY_HEADERS``."""
    if body is None:
        start_response("304 Not Modified", [*headers, *SECURITY_HEADERS])
        return []
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))), *headers, *SECURITY_HEADERS])
    if len(body) >= STREAM_FROM and "wsgi.file_wrapper" in environ:
        # waitress would copy the whole body into a buffer per connection; a file wrapper
        # over the cached bytes (BytesIO shares them) is sent piece by piece instead.
        return environ["wsgi.file_wrapper"](io.BytesIO(body))
    return [body]


def json_response(payload, status=200, headers=None) -> Response:
    """A JSON response encoded with orjson (the hot path: no per-field Python encoding)."""
    response = Response(orjson.dumps(payload), status=status, mimetype="application/json")
    if headers:
        response.headers.update(headers)
    return response


def encoded_json_response(body: bytes, headers=None) -> Response:
    """A 200 answer whose JSON body is already encoded."""
    return Response(body, content_type="application/json", headers=headers)


def not_modified(headers) -> Response:
    """A 304 answer: no body, no Content-Type."""
    response = Response(status=304, headers=headers)
    del response.headers["Content-Type"]
    return response


def error_response(message, status, headers=None) -> Response:
    return json_response({"error": message}, status, headers)


class PhaseApi(Api):
    """flask-smorest's Api documenting Phase's ``{"error": ...}`` body for every error."""

    ERROR_SCHEMA = Error


def register_api(app: Flask) -> None:
    """Register the blueprints, the OpenAPI document and the error handlers (the middleware
    around them is ``app.build_middleware``'s)."""
    # The blueprint modules import helpers from this package, so they are imported here.
    from . import client_protocol, history, lockbox, management, meta, secrets

    api = PhaseApi(
        app,
        spec_kwargs={
            "servers": [{"url": "/service/public", "description": "self-hosted prefix"}],
            # Every operation needs a token unless it says otherwise (security=[]).
            "security": [{"bearer": []}],
            "components": {
                "securitySchemes": {
                    "bearer": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "`Bearer User <token>` or `Bearer ServiceAccount <token>`",
                    }
                }
            },
        },
    )
    app.config.setdefault("OPENAPI_URL_PREFIX", "/")
    for module in (meta, secrets, history, lockbox, management, client_protocol):
        api.register_blueprint(module.blp)
    app.extensions["phase_lite_api"] = api
    _register_error_handlers(app)

    @app.route("/openapi.json")
    def openapi_document():
        return json_response(api.spec.to_dict())


def direct_gets() -> dict:
    """{path: answer(environ)} of the GETs the fast path answers (``PrefixMiddleware``)."""
    from . import client_protocol, secrets

    return {**secrets.DIRECT_GETS, **client_protocol.DIRECT_GETS}


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(errors.PhaseError)
    def phase_error(error):
        headers = None
        if isinstance(error, errors.AuthenticationFailed) and error.message == NO_CREDENTIALS:
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(error, errors.Throttled):
            headers = {"Retry-After": str(error.wait_seconds)}
        return error_response(error.message, errors.status_of(error), headers)

    @app.errorhandler(HTTPException)
    def http_error(error):
        status = error.code or 500
        if status == 405:
            message = f'Method "{request.method}" not allowed.'
        else:
            message = HTTP_MESSAGES.get(status) or error.description or error.name
        response = error_response(message, status)
        if status == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(DecryptionFailed)
    def decryption_failed(error):
        log.error("decryption failed: %s", error)
        return error_response(errors.INTERNAL_ERROR, 500)

    @app.errorhandler(StoreError)
    def store_failed(error):
        log.error("store error: %s", error)
        return error_response(errors.INTERNAL_ERROR, 500)

    @app.errorhandler(Exception)
    def unexpected(error):
        from ..access_log import loggable_path  # (it imports this package)

        log.error("unhandled %s on %s %s", error.__class__.__name__, request.method,
                  loggable_path(request.path), exc_info=app.debug)
        return error_response(errors.INTERNAL_ERROR, 500)
