"""The endpoints of the Phase CLI and SDKs: ``/service/secrets/tokens/``, ``/service/secrets/``.

They live beside the public API (``PrefixMiddleware`` strips ``/service``), never under
``/public``: a request that came through ``/public`` gets 404, as on Phase.
"""

from flask import Response, abort, request

from .. import contract
from .. import secrets as secret_rules
from ..request_context import generation, request_meta, services, throttle
from . import PUBLIC_FLAG, encoded_json_response, json_response
from .docs import PhaseBlueprint, ScopedView
from .pipeline import client_secrets_request

blp = PhaseBlueprint(
    "client_protocol", __name__,
    description="The protocol of the Phase CLI and SDKs: ph:v1 ciphertexts, client-side crypto",
    errors={
        400: "Invalid body or ciphertext, or a keyDigest that does not match the key",
        401: "Missing, malformed, unknown or expired token; service account without access",
        403: "Refused token (key-share endpoint), no access, or role without permission",
        404: "Unknown secret id (update)",
        409: "Duplicate secret found",
    },
)

# These routes sit under /service, not under the public API's /service/public.
SERVERS = [{"url": "/service", "description": "self-hosted prefix"}]
WRITTEN = "Written (empty body)"

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


_TIME = {"type": "string", "format": "date-time"}
_WIRE_OVERRIDE = {"id": {"type": "string"}, "value": _CIPHERTEXT, "is_active": {"type": "boolean"},
                  "created_at": _TIME, "updated_at": _TIME}
_WIRE_SECRET = {
    "id": {"type": "string"}, "environment": {"type": "string"},
    "folder": {"type": "string", "nullable": True}, "path": {"type": "string"},
    "key": _CIPHERTEXT, "key_digest": {"type": "string"}, "value": _CIPHERTEXT,
    "version": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
    "comment": {"type": "string", "description": "ph:v1 ciphertext, or empty"},
    "type": {"type": "string", "enum": list(contract.SECRET_TYPES)},
    "created_at": _TIME, "updated_at": _TIME, "override": None, "lifecycle": {"type": "string"},
}


def _camel(name):
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _wire_object(properties, camel):
    """A closed object of these properties (all required), in snake_case or camelCase."""
    properties = {_camel(name) if camel else name: value for name, value in properties.items()}
    return {"type": "object", "required": list(properties), "properties": properties,
            "additionalProperties": False}


def _wire_secret(camel):
    override = {**_wire_object(_WIRE_OVERRIDE, camel), "nullable": True}
    return _wire_object({**_WIRE_SECRET, "override": override}, camel)


_WIRE_SECRETS = {"type": "array", "items": {
    "oneOf": [_wire_secret(camel=False), _wire_secret(camel=True)],
    "description": "snake_case, or camelCase when X-Use-Camel-Case is true"}}
_NULLABLE_STRING = {"type": "string", "nullable": True}
_ENVIRONMENT_KEY = _wire_object({
    "id": {"type": "string"},
    "environment": _wire_object({"id": {"type": "string"}, "name": {"type": "string"},
                                 "env_type": {"type": "string"}, "index": {"type": "integer"},
                                 "created_at": _TIME, "updated_at": _TIME}, camel=False),
    "paths": {"type": "string", "nullable": True}, "identity_key": {"type": "string"},
    "wrapped_seed": _CIPHERTEXT, "wrapped_salt": _CIPHERTEXT,
    "created_at": _TIME, "updated_at": _TIME, "deleted_at": _NULLABLE_STRING,
    "user": _NULLABLE_STRING, "service_account": _NULLABLE_STRING,
}, camel=False)
_NAMED = {"type": "object", "required": ["id", "name"],
          "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}
_TOKEN_KEYS = {
    "type": "object",
    "required": ["wrapped_key_share", "offline_enabled", "apps", "organisation"],
    "properties": {
        "wrapped_key_share": {"type": "string"},
        "user_id": {"type": "string", "description": "For a personal token"},
        "account_id": {"type": "string", "description": "For a service account token"},
        "offline_enabled": {"type": "boolean"},
        "apps": {"type": "array", "items": {
            "type": "object", "required": ["id", "name", "encryption", "environment_keys"],
            "properties": {
                "id": {"type": "string"}, "name": {"type": "string"},
                "encryption": {"type": "string", "enum": ["SSE"]},
                "environment_keys": {"type": "array", "items": _ENVIRONMENT_KEY},
            }}},
        "organisation": _NAMED,
    },
}


def _secrets_body(entry):
    return {"type": "object", "required": ["secrets"],
            "properties": {"secrets": {"type": "array", "items": entry}}}


def protocol(environ):
    return services(environ).client_protocol


@blp.before_request
def _not_under_public():
    if request.environ.get(PUBLIC_FLAG):
        abort(404)


@blp.route("/secrets/tokens/")
class TokenKeys(ScopedView):
    def steps(self, environ, method):
        caller = protocol(environ).authenticate_for_keys(environ.get("HTTP_AUTHORIZATION"))
        throttle(environ, caller)
        return (caller,)

    @blp.operation(200, _TOKEN_KEYS, "OK", errors=(403,), parameters=[], servers=SERVERS)
    def get(self, caller):
        """Return the token's wrapped key share and the environment keys it may use"""
        return json_response(protocol(request.environ).token_keys(caller))


# Phase answers these (after authentication) with 403, so they must reach the view.
OTHER_METHODS = ("PATCH", "HEAD", "OPTIONS", "TRACE")


def _body():
    # Node's SDK labels JSON bodies as form data or plain text: read the raw bytes.
    return secret_rules.parse_body(request.get_data(cache=False))


def _written():
    return Response(status=200, mimetype="application/json")


@blp.route("/secrets/", methods=[*secret_rules.ACTIONS, *OTHER_METHODS])
class Secrets(ScopedView):
    def steps(self, environ, method):
        """Authenticate, find the environment (``Environment`` header), check the role."""
        return client_secrets_request(environ, method)

    @blp.operation(200, _WIRE_SECRETS, "OK", errors=(401, 403), parameters=_READ_HEADERS,
                   servers=SERVERS)
    def get(self, caller, env):
        """List an environment's secrets as ph:v1 ciphertexts"""
        return encoded_json_response(_read(caller, env, request.environ))

    @blp.operation(200, None, WRITTEN, errors=(400, 401, 403, 409), body=_secrets_body(_ENTRY),
                   parameters=[_ENVIRONMENT], servers=SERVERS)
    def post(self, caller, env):
        """Create secrets sent as ph:v1 ciphertexts"""
        protocol(request.environ).create_secrets(caller, env, _body(),
                                                 request_meta(request.environ))
        return _written()

    @blp.operation(200, None, WRITTEN, errors=(400, 401, 403, 404, 409), body=_secrets_body(
        {**_ENTRY, "required": ["id"], "properties": {
            "id": {"type": "string"}, **_ENTRY["properties"]}}),
        parameters=[_ENVIRONMENT], servers=SERVERS)
    def put(self, caller, env):
        """Update secrets sent as ph:v1 ciphertexts"""
        protocol(request.environ).update_secrets(caller, env, _body(),
                                                 request_meta(request.environ))
        return _written()

    @blp.operation(200, None, WRITTEN, errors=(400, 401, 403),
                   body=_secrets_body({"type": "string"}), parameters=[_ENVIRONMENT],
                   servers=SERVERS)
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
