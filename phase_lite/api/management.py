"""Phase's management API: apps, environments, roles, service accounts and their tokens.

Every route runs in the order of Phase's DRF views: authenticate; resolve the app or environment
the request names (the URL's id first, else Phase's headers and query parameters, with the
authentication class's access checks and texts); refuse a method the route lacks with 405
``Method "PATCH" not allowed.`` (HEAD, OPTIONS and TRACE too, as on Phase); check the role's
permission (``You don't have permission to <action> <things>.``); then act. Objects are
rendered with the field names, order and statuses of Phase's responses.

Two choices where Phase's texts cannot apply as written:
- ``You do not have access to this app.`` / ``Service account does not have access to this
  app.`` (Phase's app views) sit behind the same check in Phase's authentication class, which
  answers first with ``User cannot access this app`` (403) / ``Service account cannot access
  this app`` (401); phase_lite answers as the running server does.
- Custom roles are not provided. ``POST /v1/roles/`` answers 403 with the text Phase sends to an
  organisation whose plan lacks them, and ``PUT``/``DELETE /v1/roles/<id>/`` answer Phase's 403
  for default roles (every role is one): the routes exist on Phase, so 405 would be wrong.
"""

import json
import re
from urllib.parse import parse_qsl

from flask import Response, request
from werkzeug.exceptions import MethodNotAllowed

from .. import accounts, apps, schemas, service_accounts, tokens
from .. import request_context as context
from ..errors import InvalidRequest, PermissionDenied, UnsupportedMediaType
from ..store import render_time
from . import json_response
from .docs import PhaseBlueprint, ScopedView

ERROR_DESCRIPTIONS = {
    400: "Invalid request body",
    401: "Missing, malformed, unknown or expired token (or a service account without access)",
    403: "The caller's role or access does not allow this",
    404: "Not found in the caller's organisation",
    409: "The name is taken (by another app, or another environment of the app)",
    415: "The body is neither JSON nor form-encoded",
    429: "Rate limit exceeded",
}
blp = PhaseBlueprint("management", __name__,
                     description="Apps, environments, roles, service accounts and their tokens",
                     errors=ERROR_DESCRIPTIONS)

METHOD_TO_ACTION = {"GET": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
APP_ID_QUERY = [{"in": "query", "name": "app_id", "required": True, "schema": {"type": "string"},
                 "description": "The app whose environments to use"}]


# -- request handling ------------------------------------------------------------------------


def route(rule, tag):
    """Route every method to the view, so that the ones it lacks are refused after
    authentication and scope, as on Phase; only its own methods are documented."""
    return blp.route(rule, tags=[tag], methods=ALL_METHODS)


class ManagementView(ScopedView):
    """A management route with Phase's order of checks (see the module docstring); what the
    steps find is kept on the view, made anew for every request."""

    init_every_request = True
    resource = noun = None  # role permission checked, e.g. "Apps" / "apps"
    app_level = False       # look in the role's app-level map
    action = None           # fixed action for routes whose permission ignores the method

    def steps(self, environ, method, **url_values):
        self.services = context.services(environ)
        self.principal = context.principal(environ)
        self.resolve(**url_values)
        context.throttle(environ, self.principal)
        # Phase checks the role's permission for the method's action before DRF looks for a
        # handler: a caller without it gets 403 even where the route lacks the method.
        action = self.action or METHOD_TO_ACTION.get(method)
        if action is not None:
            self.require(action)
        if method not in type(self).methods:
            raise MethodNotAllowed(valid_methods=sorted(type(self).methods))
        return ()

    def resolve(self, **kwargs):
        """Phase's authentication class on a route without an app or environment in its URL."""
        self.scope = context.find_scope(request.environ, self.principal)

    def require(self, action):
        apps.require(self.principal, self.resource, action, self.noun,
                     app_level=self.app_level)


def json_body() -> dict:
    """The request's body ({} when empty) as Django REST framework's parsers read it: a JSON
    object, or a form-encoded body (the last value of each field); any other type, or none,
    is 415. Multipart bodies are refused too: their parser may spool them to disk."""
    raw = request.get_data(cache=True)
    if not raw:
        return {}
    if request.mimetype == FORM_MEDIA_TYPE:
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(request.headers.get("Content-Type", ""))
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"JSON parse error - {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    if _SURROGATE_ESCAPE.search(raw):
        _refuse_lone_surrogates(body)
    return body


def _refuse_lone_surrogates(body):
    """A lone surrogate (``"\\ud800"``) decodes but is not text: no name can hold it."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            "JSON parse error - text must be valid Unicode (a lone surrogate is not)."
        ) from None


def request_meta():
    return context.request_meta(request.environ)


def _refuse_constant(name):
    raise ValueError(f"Out of range float values are not JSON compliant: {name!r}")


def no_content() -> Response:
    return Response(status=204)


# -- objects as Phase renders them -----------------------------------------------------------


def app_object(row) -> dict:
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"] or None,  # Phase stores a blank description as null
        "sseEnabled": True,
        "createdAt": render_time(row["created_at"]),
        "updatedAt": render_time(row["updated_at"]),
    }


def environment_object(row) -> dict:
    return {
        "id": row["id"],
        "name": row["name"],
        "envType": row["env_type"],
        "index": row["sort_index"],
        "createdAt": render_time(row["created_at"]),
        "updatedAt": render_time(row["updated_at"]),
    }


def role_object(row, *, with_permissions=False) -> dict:
    role = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "color": row["color"],
        "isDefault": bool(row["is_default"]),
        "createdAt": render_time(row["created_at"]),
    }
    if with_permissions:
        role["permissions"] = json.loads(row["permissions"])
    return role


def service_account_object(row) -> dict:
    return {
        "id": row["id"],
        "name": row["name"],
        "role": {"id": row["role_id"], "name": row["role_name"]},
        "createdAt": render_time(row["created_at"]),
        "updatedAt": render_time(row["updated_at"]),
    }


def service_account_detail(services, principal, row) -> dict:
    live_tokens, granted = service_accounts.service_account_detail(services, principal, row)
    return service_account_object(row) | {
        "tokens": [
            {"id": t["id"], "name": t["name"], "createdAt": render_time(t["created_at"]),
             "expiresAt": render_time(t["expires_at"])}
            for t in live_tokens
        ],
        "apps": [
            {"id": app_id, "name": name,
             "environments": [{"id": e["id"], "name": e["name"], "envType": e["env_type"]}
                              for e in envs]}
            for app_id, name, envs in granted
        ],
    }


def issued_token_object(issued) -> dict:
    return {
        "id": issued.id,
        "name": issued.name,
        "createdAt": render_time(issued.created_at),
        "expiresAt": render_time(issued.expires_at),
        "token": issued.token,
        "bearerToken": issued.bearer_token,
    }


# -- apps ------------------------------------------------------------------------------------


@route("/v1/apps/", "apps")
class Apps(ManagementView):
    resource, noun = "Apps", "apps"

    @blp.operation(200, schemas.AppList, errors=(401, 403, 429))
    def get(self):
        """List the apps the caller can see, newest first"""
        rows = apps.visible_apps(self.services, self.principal)
        return json_response({"data": [app_object(row) for row in rows]})

    @blp.operation(201, schemas.AppWithEnvironments, errors=(400, 401, 403, 409, 415, 429),
                   body=schemas.NewApp)
    def post(self):
        """Create an app with its environments"""
        app, envs = apps.create_app(self.services, self.principal, json_body(),
                                    request_meta())
        body = app_object(app) | {"environments": [environment_object(e) for e in envs]}
        return json_response(body, 201)


@route("/v1/apps/<app_id>/", "apps")
class AppDetail(ManagementView):
    resource, noun = "Apps", "apps"

    def resolve(self, app_id):
        self.app = apps.app_in_scope(self.services, self.principal, app_id)

    @blp.operation(200, schemas.App, errors=(401, 403, 404, 429))
    def get(self, app_id):
        """Read an app"""
        return json_response(app_object(self.app))

    @blp.operation(200, schemas.App, errors=(400, 401, 403, 404, 409, 415, 429),
                   body=schemas.AppChange)
    def put(self, app_id):
        """Rename an app or change its description"""
        app = apps.update_app(self.services, self.principal, self.app, json_body(),
                              request_meta())
        return json_response(app_object(app))

    @blp.operation(204, errors=(401, 403, 404, 429))
    def delete(self, app_id):
        """Delete an app with its environments, secrets and access grants"""
        apps.delete_app(self.services, self.principal, self.app, request_meta())
        return no_content()


# -- environments ----------------------------------------------------------------------------


@route("/v1/environments/", "environments")
class Environments(ManagementView):
    resource, noun, app_level = "Environments", "environments", True

    def resolve(self):
        super().resolve()
        if self.scope.app is None:
            raise PermissionDenied("Could not resolve app from request.")
        self.app = self.scope.app

    @blp.operation(200, schemas.EnvironmentList, errors=(401, 403, 404, 429),
                   parameters=APP_ID_QUERY)
    def get(self):
        """List the app's environments the caller holds, in order"""
        rows = apps.visible_environments(self.services, self.principal, self.app)
        return json_response({"data": [environment_object(row) for row in rows]})

    @blp.operation(201, schemas.Environment, errors=(400, 401, 403, 404, 415, 429),
                   body=schemas.EnvironmentName, parameters=APP_ID_QUERY)
    def post(self):
        """Add a custom environment to the app"""
        env = apps.create_environment(self.services, self.principal, self.app,
                                      json_body(), request_meta())
        return json_response(environment_object(env), 201)


@route("/v1/environments/<env_id>/", "environments")
class EnvironmentDetail(ManagementView):
    resource, noun, app_level = "Environments", "environments", True

    def resolve(self, env_id):
        self.app, self.env = apps.environment_in_scope(self.services, self.principal,
                                                       env_id)

    def environment(self):
        apps.check_environment_access(self.services, self.principal, self.env)
        return self.env

    @blp.operation(200, schemas.Environment, errors=(401, 403, 404, 429))
    def get(self, env_id):
        """Read an environment"""
        return json_response(environment_object(self.environment()))

    @blp.operation(200, schemas.Environment, errors=(400, 401, 403, 404, 409, 415, 429),
                   body=schemas.EnvironmentName)
    def put(self, env_id):
        """Rename an environment"""
        env = self.environment()
        env = apps.rename_environment(self.services, self.principal, env, json_body(),
                                      request_meta())
        return json_response(environment_object(env))

    @blp.operation(204, errors=(401, 403, 404, 429))
    def delete(self, env_id):
        """Delete an environment with its secrets"""
        apps.delete_environment(self.services, self.principal, self.environment(),
                                request_meta())
        return no_content()


# -- roles -----------------------------------------------------------------------------------


@route("/v1/roles/", "roles")
class Roles(ManagementView):
    resource, noun = "Roles", "roles"

    @blp.operation(200, schemas.RoleList, errors=(401, 403, 429))
    def get(self):
        """List the organisation's roles (the five default roles)"""
        rows = accounts.list_roles(self.services, self.principal)
        return json_response({"data": [role_object(row) for row in rows]})

    @blp.operation(None, errors=(401, 403, 415, 429), body=schemas.RoleChange)
    def post(self):
        """Create a custom role (not available: always refused with 403)"""
        raise PermissionDenied(accounts.CUSTOM_ROLES_UNAVAILABLE)


@route("/v1/roles/<role_id>/", "roles")
class RoleDetail(ManagementView):
    resource, noun = "Roles", "roles"

    @blp.operation(200, schemas.RoleDetail, errors=(401, 403, 404, 429))
    def get(self, role_id):
        """Read a role with its permission maps"""
        role = accounts.get_role(self.services, self.principal, role_id)
        return json_response(role_object(role, with_permissions=True))

    @blp.operation(None, errors=(401, 403, 404, 415, 429), body=schemas.RoleChange)
    def put(self, role_id):
        """Change a role (default roles cannot be modified: always refused with 403)"""
        accounts.refuse_role_change(self.services, self.principal, role_id, "update")

    @blp.operation(None, errors=(401, 403, 404, 429))
    def delete(self, role_id):
        """Delete a role (default roles cannot be deleted: always refused with 403)"""
        accounts.refuse_role_change(self.services, self.principal, role_id, "delete")


# -- service accounts ------------------------------------------------------------------------


@route("/v1/service-accounts/", "service accounts")
class ServiceAccounts(ManagementView):
    resource, noun = "ServiceAccounts", "service accounts"

    @blp.operation(200, schemas.ServiceAccountList, errors=(401, 403, 429))
    def get(self):
        """List the organisation's service accounts, newest first"""
        rows = service_accounts.list_service_accounts(self.services, self.principal)
        return json_response({"data": [service_account_object(row) for row in rows]})

    @blp.operation(201, schemas.ServiceAccountCreated, errors=(400, 401, 403, 404, 415, 429),
                   body=schemas.NewServiceAccount)
    def post(self):
        """Create a service account with its first token (shown once)"""
        sa, token = service_accounts.create_service_account(self.services, self.principal,
                                                            json_body(), request_meta())
        body = service_account_object(sa) | {"initialToken": issued_token_object(token)}
        return json_response(body, 201)


@route("/v1/service-accounts/<sa_id>/", "service accounts")
class ServiceAccountDetail(ManagementView):
    resource, noun = "ServiceAccounts", "service accounts"

    def account(self, sa_id):
        return service_accounts.get_service_account(self.services, self.principal, sa_id)

    @blp.operation(200, schemas.ServiceAccountDetail, errors=(401, 403, 404, 429))
    def get(self, sa_id):
        """Read a service account with its tokens and the environments it holds"""
        sa = self.account(sa_id)
        return json_response(service_account_detail(self.services, self.principal, sa))

    @blp.operation(200, schemas.ServiceAccountDetail, errors=(400, 401, 403, 404, 415, 429),
                   body=schemas.ServiceAccountChange)
    def put(self, sa_id):
        """Rename a service account or give it another role"""
        sa = service_accounts.update_service_account(self.services, self.principal,
                                                     self.account(sa_id), json_body(),
                                                     request_meta())
        return json_response(service_account_detail(self.services, self.principal, sa))

    @blp.operation(204, errors=(401, 403, 404, 429))
    def delete(self, sa_id):
        """Delete a service account; its tokens stop working at once"""
        service_accounts.delete_service_account(self.services, self.principal,
                                                self.account(sa_id), request_meta())
        return no_content()


@route("/v1/service-accounts/<sa_id>/access/", "service accounts")
class ServiceAccountAccess(ManagementView):
    resource, noun, action = "ServiceAccounts", "service accounts", "update"

    @blp.operation(200, schemas.ServiceAccountDetail, errors=(400, 401, 403, 404, 415, 429),
                   body=schemas.ServiceAccountAccess)
    def put(self, sa_id):
        """Replace the apps and environments a service account may use"""
        sa = service_accounts.get_service_account(self.services, self.principal, sa_id)
        service_accounts.set_service_account_access(self.services, self.principal, sa,
                                                    json_body(), request_meta())
        return json_response(service_account_detail(self.services, self.principal, sa))


@route("/v1/service-accounts/<sa_id>/tokens/", "service accounts")
class ServiceAccountTokens(ManagementView):
    resource, noun, action = "ServiceAccountTokens", "service account tokens", "create"

    @blp.operation(201, schemas.IssuedToken, errors=(400, 401, 403, 404, 415, 429),
                   body=schemas.NewToken)
    def post(self, sa_id):
        """Mint another token for a service account (shown once)"""
        sa = service_accounts.get_service_account(self.services, self.principal, sa_id)
        token = tokens.issue_service_account_token(self.services, self.principal, sa,
                                                   json_body(), request_meta())
        return json_response(issued_token_object(token), 201)


@route("/v1/service-accounts/<sa_id>/tokens/<token_id>/", "service accounts")
class ServiceAccountToken(ManagementView):
    resource, noun, action = "ServiceAccountTokens", "service account tokens", "delete"

    @blp.operation(204, errors=(401, 403, 404, 429))
    def delete(self, sa_id, token_id):
        """Revoke a service account's token; it stops working at once"""
        sa = service_accounts.get_service_account(self.services, self.principal, sa_id)
        tokens.revoke_service_account_token(self.services, self.principal, sa, token_id,
                                            request_meta())
        return no_content()
