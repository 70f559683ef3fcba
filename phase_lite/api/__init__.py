"""The HTTP layer: flask-smorest blueprints, Phase's URL prefixes, one error shape.

Phase mounts its public routes at ``/`` and ``/public/``, and strips a leading ``/service``
from every path (``ServicePrefixMiddleware``), so ``/service/public/v1/secrets/``,
``/public/v1/secrets/``, ``/service/v1/secrets/`` and ``/v1/secrets/`` are one route. The
``PrefixMiddleware`` below does the same before Flask routes the request. Every 4xx/5xx body is
``{"error": "..."}``, Flask's own 404/405/413/500 included.
"""

import logging

import orjson
from flask import Flask, Response, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from .. import errors
from ..auth import NO_CREDENTIALS
from ..ratelimit import RateLimiter
from ..schemas import Error
from ..store import StoreError
from ..vault import DecryptionFailed

log = logging.getLogger("phase_lite.api")

PUBLIC_FLAG = "phase_lite.public_prefix"
SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
HTTP_MESSAGES = {
    404: "Not found.",
    413: "Request body is too large.",
}


class PrefixMiddleware:
    """Strip ``/service`` then ``/public`` from the path, as Phase's routing does."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/service" or path.startswith("/service/"):
            path = path[len("/service"):] or "/"
        if path == "/public" or path.startswith("/public/"):
            path = path[len("/public"):] or "/"
            environ[PUBLIC_FLAG] = True
        environ["PATH_INFO"] = path
        return self.wsgi_app(environ, start_response)


def json_response(payload, status=200, headers=None) -> Response:
    """A JSON response encoded with orjson (the hot path: no per-field Python encoding)."""
    response = Response(orjson.dumps(payload), status=status, mimetype="application/json")
    if headers:
        response.headers.update(headers)
    return response


def error_response(message, status, headers=None) -> Response:
    return json_response({"error": message}, status, headers)


class PhaseApi(Api):
    """flask-smorest's Api documenting Phase's ``{"error": ...}`` body for every error."""

    ERROR_SCHEMA = Error


def register_api(app: Flask, services) -> None:
    from . import meta

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
    api.register_blueprint(meta.blp)
    for module_name in ("secrets", "management", "client_protocol"):
        blueprint = _optional_blueprint(module_name)
        if blueprint is not None:
            api.register_blueprint(blueprint)
    app.extensions["phase_lite_api"] = api
    app.extensions["phase_lite_limiter"] = RateLimiter(services.config.rate_limit)

    app.wsgi_app = PrefixMiddleware(app.wsgi_app)
    _register_error_handlers(app)

    @app.before_request
    def refuse_oversized_bodies():
        # Before routing, so a body over the limit is a 413 whatever the route or method.
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            return error_response(HTTP_MESSAGES[413], 413)

    @app.after_request
    def add_security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.route("/openapi.json")
    def openapi_document():
        return json_response(api.spec.to_dict())


def _optional_blueprint(module_name):
    import importlib

    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{module_name}":
            raise
        return None
    return module.blp


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
        elif status == 422:
            message = _first_validation_message(error)
            status = 400
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
        log.error("unhandled %s on %s %s", error.__class__.__name__, request.method,
                  request.path, exc_info=app.debug)
        return error_response(errors.INTERNAL_ERROR, 500)


def _first_validation_message(error):
    messages = getattr(error, "data", {}).get("messages") if hasattr(error, "data") else None

    def first(value):
        if isinstance(value, dict):
            for key, inner in value.items():
                found = first(inner)
                if found:
                    return found if isinstance(inner, list) and key == "_schema" else found
        if isinstance(value, list) and value:
            return str(value[0])
        if isinstance(value, str):
            return value
        return None

    return first(messages) or "Invalid request."
