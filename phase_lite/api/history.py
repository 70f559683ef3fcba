"""Secret history, restore and deleted secrets: phase_lite extensions, not part of Phase's API.

``/v1/secrets/<secret_id>/history/``, ``/v1/secrets/<secret_id>/restore/`` and
``/v1/secrets/deleted/`` (under the same four prefixes as ``/v1/secrets/``) run the steps of
``/v1/secrets/`` (``pipeline.secrets_request``: 406, 401, scope 404/401/403, 429, the role's
``Secrets`` permission 403), reading for history and the deleted list, updating for a restore.
Phase's clients never call them.
"""

from flask import request

from .. import history, schemas, secrets
from ..request_context import request_meta, services
from . import json_response
from .docs import PhaseBlueprint, ScopedView
from .pipeline import secrets_request
from .secrets import IF_MATCH, expected_version

# One tag for every extension: ``api.lockbox``'s routes carry it too.
TAG = "phase_lite_extensions"
blp = PhaseBlueprint(
    TAG, __name__,
    description="phase_lite extensions, not part of Phase's API (Phase's clients never call "
                "them): secret history, restore and deleted secrets, and Lockbox shares.",
    errors={
        400: "Invalid body",
        401: "Missing, malformed, unknown or expired token; service account without access",
        403: "No access to the environment, no environment named, or role without permission",
        404: "Unknown app, environment, secret (or a secret of another environment) or "
             "version",
        409: "The restored key and path belong to another live secret",
        412: "If-Match names an earlier state of the environment",
        429: "Rate limit exceeded",
    },
)

_SCOPE = [
    {"in": "query", "schema": schemas.SecretsQuery},
    {"in": "header", "name": "Environment", "schema": {"type": "string"},
     "description": "Environment id (instead of `app_id` and `env`)."},
]
_READ_ERRORS = (401, 403, 404, 429)


class EnvironmentView(ScopedView):
    """A route with the steps of ``/v1/secrets/`` for the permission of ``as_method`` (a
    restore is an update); its handlers get the caller and the environment row."""

    as_method = "GET"

    def steps(self, environ, method, **url_values):
        return secrets_request(environ, self.as_method)


@blp.route("/v1/secrets/<secret_id>/history/")
class SecretHistory(EnvironmentView):
    @blp.operation(200, schemas.SecretHistory, "Every version, newest first",
                   errors=_READ_ERRORS, parameters=_SCOPE, extension=True)
    def get(self, caller, env_row, secret_id):
        """List every version of a secret, live or deleted"""
        versions = history.secret_history(services(request.environ), caller, env_row,
                                          secret_id, request_meta(request.environ))
        return json_response({"data": [history.version_body(v) for v in versions]})


@blp.route("/v1/secrets/<secret_id>/restore/", methods=["POST"])
class RestoreSecret(EnvironmentView):
    as_method = "PUT"

    @blp.operation(200, schemas.Secret, "The secret at its new version",
                   errors=(400, 401, 403, 404, 409, 412, 429), body=schemas.Restore,
                   parameters=[*_SCOPE, IF_MATCH], extension=True)
    def post(self, caller, env_row, secret_id):
        """Restore a version of a secret as a new version (undeleting it)"""
        expected = expected_version(env_row)
        version = history.parse_restore(secrets.parse_body(request.get_data()))
        found = services(request.environ)
        restored = history.restore_secret(found, caller, env_row, secret_id, version,
                                          request_meta(request.environ),
                                          expected_version=expected)
        return json_response(secrets.render_secrets(found, caller, env_row, [restored])[0])


@blp.route("/v1/secrets/deleted/")
class DeletedSecrets(EnvironmentView):
    @blp.operation(200, schemas.DeletedSecrets, "Deleted secrets, most recently deleted first",
                   errors=_READ_ERRORS, parameters=_SCOPE, extension=True)
    def get(self, caller, env_row):
        """List an environment's deleted secrets"""
        deleted = history.deleted_secrets(services(request.environ), caller, env_row,
                                          request_meta(request.environ))
        return json_response({"data": [history.deleted_body(d) for d in deleted]})
