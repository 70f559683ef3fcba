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
from flask.views import MethodView

from .. import schemas, secrets
from . import PhaseBlueprint, encoded_json_response, json_response
from .context import generation, query_args, request_meta, services
from .pipeline import secrets_request

blp = PhaseBlueprint("secrets", __name__, description="Secrets of an app environment")

# Phase answers these (after authentication) with 403, so they must reach the view.
OTHER_METHODS = ("PATCH", "HEAD", "OPTIONS", "TRACE")

_SCOPE = [{"in": "query", "schema": schemas.SecretsQuery}]
_ENVIRONMENT_HEADERS = [
    {"in": "header", "name": "Environment", "schema": {"type": "string"},
     "description": "Environment id (instead of `app_id` and `env`)."},
]


def _errors(*statuses):
    """Document the ``{"error": ...}`` responses of an operation."""
    meanings = {
        400: "Invalid body or parameters",
        401: "Missing, malformed, unknown or expired token; service account without access",
        403: "No access to the environment, no environment named, or role without permission",
        404: "Unknown app, environment or secret",
        409: "Duplicate secret found",
        429: "Rate limit exceeded",
    }

    def decorate(view):
        for status in reversed(statuses):
            view = blp.alt_response(status, schema=schemas.Error,
                                    description=meanings[status])(view)
        return view

    return decorate


def _body(schema):
    return {"required": True, "content": {"application/json": {"schema": schema}}}


@blp.route("/v1/secrets/", methods=[*secrets.ACTIONS, *OTHER_METHODS])
class Secrets(MethodView):
    init_every_request = False  # no per-request state on the view

    def dispatch_request(self, **kwargs):
        caller, env_row = secrets_request(request.environ, request.method)
        return getattr(self, request.method.lower())(caller, env_row)

    @blp.doc(parameters=[{"in": "query", "schema": schemas.SecretsFilter},
                         *_ENVIRONMENT_HEADERS])
    @blp.alt_response(200, schema=schemas.Secret(many=True), success=True,
                      description="The matching secrets (an empty array when none match)")
    @_errors(400, 401, 403, 404, 429)
    def get(self, caller, env_row):
        """List an environment's secrets, by key, path or tags"""
        return encoded_json_response(_read(caller, env_row, request.environ))

    @blp.doc(parameters=[*_SCOPE, *_ENVIRONMENT_HEADERS],
             requestBody=_body(schemas.CreateSecrets))
    @blp.alt_response(200, schema=schemas.Secret(many=True), success=True,
                      description="The created secrets")
    @_errors(400, 401, 403, 404, 409, 429)
    def post(self, caller, env_row):
        """Create secrets: all of them or none"""
        entries = secrets.parse_new_secrets(secrets.parse_body(request.get_data()))
        created = secrets.create_secrets(services(request.environ), caller, env_row, entries,
                                         request_meta(request.environ))
        return json_response(secrets.render_secrets(services(request.environ), caller, env_row,
                                                    created))

    @blp.doc(parameters=[*_SCOPE, *_ENVIRONMENT_HEADERS],
             requestBody=_body(schemas.UpdateSecrets))
    @blp.alt_response(200, schema=schemas.Secret(many=True), success=True,
                      description="The updated secrets")
    @_errors(400, 401, 403, 404, 409, 429)
    def put(self, caller, env_row):
        """Update secrets by id: all of them or none"""
        changes = secrets.parse_secret_changes(secrets.parse_body(request.get_data()))
        updated = secrets.update_secrets(services(request.environ), caller, env_row, changes,
                                         request_meta(request.environ))
        return json_response(secrets.render_secrets(services(request.environ), caller, env_row,
                                                    updated))

    @blp.doc(parameters=[*_SCOPE, *_ENVIRONMENT_HEADERS],
             requestBody=_body(schemas.DeleteSecrets))
    @blp.alt_response(200, schema=schemas.Message, success=True,
                      description="`Deleted N secret(s)`")
    @_errors(400, 401, 403, 404, 429)
    def delete(self, caller, env_row):
        """Delete secrets by id: all of them or none"""
        ids = secrets.parse_secret_ids(secrets.parse_body(request.get_data()))
        count = secrets.delete_secrets(services(request.environ), caller, env_row, ids,
                                       request_meta(request.environ))
        return json_response({"message": f"Deleted {count} secret{'' if count == 1 else 's'}"})


def _read(caller, env_row, environ) -> bytes:
    args = query_args(environ)
    secrets.check_dynamic_arguments(args)
    return secrets.read_secrets(
        services(environ), caller, env_row, key=args.get("key"), path=args.get("path"),
        tags=args.get("tags"), meta=request_meta(environ), generation=generation(environ),
    )


def read_directly(environ) -> bytes:
    """A GET answered before Flask (``PrefixMiddleware``): the view's steps and read."""
    caller, env_row = secrets_request(environ, "GET")
    return _read(caller, env_row, environ)


DIRECT_GETS = {"/v1/secrets/": read_directly}
