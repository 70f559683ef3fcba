"""Phase's public secrets endpoint: ``/v1/secrets/`` (also under ``/public`` and ``/service``).

Every method runs Phase's checks in Phase's order before its handler: an Accept header that
rules out JSON (406), authentication (401),
the environment the request names (404/401) and access to it (403 user, 401 service account),
then the method (403 ``Unsupported HTTP method``), the environment requirement (403) and the
role's ``Secrets`` permission (403). Bodies are parsed by the domain layer with Phase's
messages, whatever the Content-Type. The steps are ``pipeline.secrets_request``; a GET is
first offered to ``read_directly``, the same steps and read before Flask (``PrefixMiddleware``).
"""

from flask import request

from .. import conditional, schemas, secrets
from ..request_context import generation, query_args, request_meta, services
from . import encoded_json_response, json_response, not_modified
from .docs import PhaseBlueprint, ScopedView
from .pipeline import secrets_request

ERROR_DESCRIPTIONS = {
    400: "Invalid body or parameters",
    401: "Missing, malformed, unknown or expired token; service account without access",
    403: "No access to the environment, no environment named, or role without permission",
    404: "Unknown app, environment or secret",
    409: "Duplicate secret found",
    412: "phase_lite extension: If-Match names an earlier state of the environment",
    429: "Rate limit exceeded",
}
blp = PhaseBlueprint("secrets", __name__, description="Secrets of an app environment",
                     errors=ERROR_DESCRIPTIONS)

# Phase answers these (after authentication) with 403, so they must reach the view.
OTHER_METHODS = ("PATCH", "HEAD", "OPTIONS", "TRACE")

_SCOPE = [{"in": "query", "schema": schemas.SecretsQuery}]
_ENVIRONMENT_HEADERS = [
    {"in": "header", "name": "Environment", "schema": {"type": "string"},
     "description": "Environment id (instead of `app_id` and `env`)."},
]
# Conditional requests are a phase_lite extension (Phase's clients never send them).
_IF_NONE_MATCH = {
    "in": "header", "name": "If-None-Match", "schema": {"type": "string"},
    "x-phase-lite-extension": True,
    "description": "phase_lite extension: an `ETag` of an earlier answer; 304 without a body "
                   "when the answer is still the same (the read is still authenticated, "
                   "counted and audited).",
}
IF_MATCH = {
    "in": "header", "name": "If-Match", "schema": {"type": "string"},
    "x-phase-lite-extension": True,
    "description": "phase_lite extension: an `ETag` from a GET of this environment; 412 and "
                   "nothing written if the environment has changed since.",
}
_ETAG = {"ETag": {"schema": {"type": "string"}, "x-phase-lite-extension": True,
                  "description": "phase_lite extension: changes whenever this answer could."}}
WRITE_PARAMETERS = [*_SCOPE, *_ENVIRONMENT_HEADERS, IF_MATCH]


@blp.route("/v1/secrets/", methods=[*secrets.ACTIONS, *OTHER_METHODS])
class Secrets(ScopedView):
    def steps(self, environ, method):
        return secrets_request(environ, method)

    @blp.operation(200, schemas.Secret(many=True),
                   "The matching secrets (an empty array when none match)", headers=_ETAG,
                   answers={304: {"headers": _ETAG, "description": (
                       "phase_lite extension: If-None-Match names this answer's ETag; "
                       "no body")}},
                   errors=(400, 401, 403, 404, 429),
                   parameters=[{"in": "query", "schema": schemas.SecretsFilter},
                               *_ENVIRONMENT_HEADERS, _IF_NONE_MATCH])
    def get(self, caller, env_row):
        """List an environment's secrets, by key, path or tags"""
        body, headers = _answer(caller, env_row, request.environ)
        if body is None:
            return not_modified(headers)
        return encoded_json_response(body, headers)

    @blp.operation(200, schemas.Secret(many=True), "The created secrets",
                   errors=(400, 401, 403, 404, 409, 412, 429), body=schemas.CreateSecrets,
                   parameters=WRITE_PARAMETERS)
    def post(self, caller, env_row):
        """Create secrets: all of them or none"""
        return _write_secrets(caller, env_row, secrets.parse_new_secrets, secrets.create_secrets)

    @blp.operation(200, schemas.Secret(many=True), "The updated secrets",
                   errors=(400, 401, 403, 404, 409, 412, 429), body=schemas.UpdateSecrets,
                   parameters=WRITE_PARAMETERS)
    def put(self, caller, env_row):
        """Update secrets by id: all of them or none"""
        return _write_secrets(caller, env_row, secrets.parse_secret_changes,
                              secrets.update_secrets)

    @blp.operation(200, schemas.Message, "`Deleted N secret(s)`",
                   errors=(400, 401, 403, 404, 412, 429), body=schemas.DeleteSecrets,
                   parameters=WRITE_PARAMETERS)
    def delete(self, caller, env_row):
        """Delete secrets by id: all of them or none"""
        expected = expected_version(env_row)
        ids = secrets.parse_secret_ids(secrets.parse_body(request.get_data()))
        count = secrets.delete_secrets(services(request.environ), caller, env_row, ids,
                                       request_meta(request.environ), expected_version=expected)
        return json_response({"message": f"Deleted {count} secret{'' if count == 1 else 's'}"})


def _write_secrets(caller, env_row, parse, write):
    """A POST or PUT: all of the body's secrets written or none (under If-Match), and the
    written secrets answered."""
    expected = expected_version(env_row)
    parsed = parse(secrets.parse_body(request.get_data()))
    rows = write(services(request.environ), caller, env_row, parsed,
                 request_meta(request.environ), expected_version=expected)
    return json_response(secrets.render_secrets(services(request.environ), caller, env_row, rows))


def _answer(caller, env_row, environ) -> tuple[bytes | None, list]:
    """The GET's body and headers: its ETag, and no body (304) when the request's
    If-None-Match names it. Either way the read is done and audited."""
    args = query_args(environ)
    secrets.check_dynamic_arguments(args)
    body, tag = secrets.read_secrets(
        services(environ), caller, env_row, key=args.get("key"), path=args.get("path"),
        tags=args.get("tags"), meta=request_meta(environ), generation=generation(environ),
    )
    if conditional.none_match(environ.get("HTTP_IF_NONE_MATCH"), tag):
        body = None
    return body, [("ETag", tag)]


def expected_version(env_row) -> int | None:
    """The environment version a write's If-Match requires (412 at once if it is gone)."""
    return conditional.expected_version(request.environ.get("HTTP_IF_MATCH"), env_row)


def read_directly(environ) -> tuple[bytes | None, list]:
    """A GET answered before Flask (``PrefixMiddleware``): the view's steps and answer."""
    caller, env_row = secrets_request(environ, "GET")
    return _answer(caller, env_row, environ)


DIRECT_GETS = {"/v1/secrets/": read_directly}
