"""The endpoints of the Phase CLI and SDKs: ``/service/secrets/tokens/``, ``/service/secrets/``.

They live beside the public API (``PrefixMiddleware`` strips ``/service``), never under
``/public``: a request that came through ``/public`` gets 404, as on Phase.
"""

from flask import Response, abort, request
from flask.views import MethodView

from .. import schemas
from .. import secrets as secret_rules
from . import PUBLIC_FLAG, PhaseBlueprint, encoded_json_response, json_response
from .context import generation, request_meta, services, throttle
from .pipeline import client_secrets_request

blp = PhaseBlueprint(
    "client_protocol", __name__,
    description="The protocol of the Phase CLI and SDKs: ph:v1 ciphertexts, client-side crypto",
)

# These routes sit under /service, not under the public API's /service/public.
DOC = {"servers": [{"url": "/service", "description": "self-hosted prefix"}]}

_CIPHERTEXT = {"type": "string", "description": "ph:v1 ciphertext to the environment key"}
_ENVIRONMENT = {"in": "header", "name": "Environment", "required": True,
                "schema": {"type": "string"}, "description": "Environment id."}
_READ_HEADERS = [
    _ENVIRONMENT,
    {"in": "header", "name": "KeyDigest", "schema": {"type": "string"},
     "description": "keyDigest of one key (empty: every key)."},
    {"in": "header", "name": "Path", "schema": {"type": "string"},
     "description": "One path, exact (absent or empty: every path)."},
    {"in": "header", "name": "X-Use-Camel-Case", "schema": {"type": "string", "enum": ["true"]},
     "description": "Render keys in camelCase."},
]
_ENTRY = {
    "type": "object",
    "properties": {
        "key": _CIPHERTEXT, "value": _CIPHERTEXT, "comment": _CIPHERTEXT,
        "keyDigest": {"type": "string"}, "path": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "override": {"type": "object", "properties": {
            "value": _CIPHERTEXT, "isActive": {"type": "boolean"}}},
    },
}


def _json_body(entry):
    schema = {"type": "object", "required": ["secrets"],
              "properties": {"secrets": {"type": "array", "items": entry}}}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _doc(parameters, body=None, *errors):
    """Document an operation: its headers, body, empty 200 and ``{"error": ...}`` answers."""
    def decorate(view):
        for status in errors:
            view = blp.alt_response(status, schema=schemas.Error,
                                    description=ERROR_MEANINGS[status])(view)
        extra = {"requestBody": body} if body else {}
        return blp.doc(parameters=parameters, **DOC, **extra)(view)
    return decorate


ERROR_MEANINGS = {
    400: "Invalid body or ciphertext, or a keyDigest that does not match the key",
    401: "Missing, malformed, unknown or expired token; service account without access",
    403: "Refused token (key-share endpoint), no access, or role without permission",
    404: "Unknown secret id (update)",
    409: "Duplicate secret found",
}


def protocol(environ):
    return services(environ).client_protocol


@blp.before_request
def _not_under_public():
    if request.environ.get(PUBLIC_FLAG):
        abort(404)


@blp.route("/secrets/tokens/")
class TokenKeys(MethodView):
    @_doc([], None, 403)
    def get(self):
        """Return the token's wrapped key share and the environment keys it may use"""
        client = protocol(request.environ)
        caller = client.authenticate_for_keys(request.headers.get("Authorization"))
        throttle(request.environ, caller)
        return json_response(client.token_keys(caller))


# Phase answers these (after authentication) with 403, so they must reach the view.
OTHER_METHODS = ("PATCH", "HEAD", "OPTIONS", "TRACE")


def _body():
    # Node's SDK labels JSON bodies as form data or plain text: read the raw bytes.
    return secret_rules.parse_body(request.get_data(cache=False))


def _written():
    return Response(status=200, mimetype="application/json")


@blp.route("/secrets/", methods=[*secret_rules.ACTIONS, *OTHER_METHODS])
class Secrets(MethodView):
    init_every_request = False  # no per-request state on the view

    def dispatch_request(self, **kwargs):
        """Authenticate, find the environment (``Environment`` header), check the role."""
        caller, env_row = client_secrets_request(request.environ, request.method)
        return getattr(self, request.method.lower())(caller, env_row)

    @_doc(_READ_HEADERS, None, 401, 403)
    def get(self, caller, env):
        """List an environment's secrets as ph:v1 ciphertexts"""
        return encoded_json_response(_read(caller, env, request.environ))

    @_doc([_ENVIRONMENT], _json_body(_ENTRY), 400, 401, 403, 409)
    def post(self, caller, env):
        """Create secrets sent as ph:v1 ciphertexts"""
        protocol(request.environ).create_secrets(caller, env, _body(),
                                                 request_meta(request.environ))
        return _written()

    @_doc([_ENVIRONMENT], _json_body({**_ENTRY, "required": ["id"], "properties": {
        "id": {"type": "string"}, **_ENTRY["properties"]}}), 400, 401, 403, 404, 409)
    def put(self, caller, env):
        """Update secrets sent as ph:v1 ciphertexts"""
        protocol(request.environ).update_secrets(caller, env, _body(),
                                                 request_meta(request.environ))
        return _written()

    @_doc([_ENVIRONMENT], _json_body({"type": "string"}), 400, 401, 403)
    def delete(self, caller, env):
        """Delete secrets by id"""
        protocol(request.environ).delete_secrets(caller, env, _body(),
                                                 request_meta(request.environ))
        return _written()


def _read(caller, env, environ) -> bytes:
    return protocol(environ).read_secrets(
        caller, env, key_digest=environ.get("HTTP_KEYDIGEST"), path=environ.get("HTTP_PATH"),
        camel=environ.get("HTTP_X_USE_CAMEL_CASE") == "true", meta=request_meta(environ),
        generation=generation(environ),
    )


def read_directly(environ) -> tuple[bytes, tuple]:
    """A GET answered before Flask (``PrefixMiddleware``), as ``/v1/secrets/`` reads are: the
    body, no extra headers."""
    if environ.get(PUBLIC_FLAG):
        abort(404)
    caller, env = client_secrets_request(environ, "GET")
    return _read(caller, env, environ), ()


DIRECT_GETS = {"/secrets/": read_directly}
