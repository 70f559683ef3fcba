"""The rules of Phase's management API: apps, environments, roles, service accounts, tokens.

Interface (used by ``api/management.py``; no Flask here)
--------------------------------------------------------
Every function takes ``services`` (``app.Services``) and the caller (``auth.Principal``); writes
also take the parsed JSON body (a dict) and ``meta`` (``audit.RequestMeta``). Each write is one
transaction holding the change and its audit event; everything is validated first, so a refused
request leaves the data exactly as it was. Errors are ``errors.PhaseError`` subclasses with the
texts Phase's views send. Rows are store rows; the HTTP layer renders them.

Visibility follows phase_lite's access model: an Owner or Admin user sees every app and
environment; any other account sees an app when it holds at least one of its environments, and
an environment when it holds it (Phase's app membership and EnvironmentKey rows).
"""

from datetime import datetime, timezone

from . import accounts, apps, audit
from .errors import DoesNotExist, InvalidRequest, PermissionDenied
from .store import NotFound
from .store import accounts as account_store
from .store import apps as app_store
from .textfields import validate_text_field as clean_text

NAME_MAX = 64
DESCRIPTION_MAX = 10_000
DEFAULT_TOKEN_NAME = "Default"
# Phase gates custom roles and teams on the organisation's plan; phase_lite provides neither,
# so it answers as a Phase organisation whose plan lacks them.
CUSTOM_ROLES_UNAVAILABLE = "Custom roles are not available on your organisation's plan."
TEAMS_UNAVAILABLE = "Teams are not available on your organisation's plan."
EXPIRES_IN_INVALID = "'expires_in' must be a positive integer (seconds)."


# -- shared rules ----------------------------------------------------------------------------


def require(principal, resource, action, noun, *, app_level=False):
    """Refuse unless the caller's role grants ``action`` on ``resource`` (Phase's wording)."""
    if not principal.may(resource, action, app_level=app_level):
        raise PermissionDenied(f"You don't have permission to {action} {noun}.")


def has_global_access(principal) -> bool:
    return principal.is_user and principal.global_access


def _creator_grant(principal) -> dict:
    """Grant arguments for objects the caller creates (global users already see everything)."""
    if has_global_access(principal):
        return {}
    if principal.is_user:
        return {"grant_user_id": principal.account_id}
    return {"grant_service_account_id": principal.account_id}


def _record(db, principal, meta, action, resource_type, resource_id, **fields):
    audit.record(db, principal, action, resource_type, resource_id=resource_id, meta=meta,
                 **fields)


# -- scope named by the URL ------------------------------------------------------------------


def app_in_scope(services, principal, app_id):
    """The app a detail URL names, checked as Phase's authentication class checks it."""
    try:
        app = app_store.get_app(services.db, principal.organisation_id, app_id)
    except NotFound:
        raise DoesNotExist(f"App with ID {app_id} not found") from None
    services.auth.check_app_access(principal, app)
    return app


def environment_in_scope(services, principal, env_id):
    """The environment a detail URL names and its app (access to the app is checked here,
    access to the environment by ``check_environment_access``)."""
    try:
        env = app_store.get_environment(services.db, principal.organisation_id, env_id)
    except NotFound:
        raise DoesNotExist("Environment not found") from None
    app = app_store.get_app(services.db, principal.organisation_id, env["app_id"])
    services.auth.check_app_access(principal, app)
    return app, env


# -- apps ------------------------------------------------------------------------------------


def visible_apps(services, principal):
    """The organisation's apps the caller may see, newest first."""
    rows = app_store.list_apps(services.db, principal.organisation_id)
    if has_global_access(principal):
        return rows
    granted = services.auth.accessible_environment_ids(principal)
    app_ids = {
        env["app_id"]
        for env in app_store.list_org_environments(services.db, principal.organisation_id)
        if env["id"] in granted
    }
    return [row for row in rows if row["id"] in app_ids]


def environment_names(value):
    """The optional ``environments`` list of an app creation, checked as Phase checks it."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidRequest("'environments' must be a list of environment names.")
    if not value:
        raise InvalidRequest("'environments' must not be empty.")
    if any(not isinstance(name, str) or not name.strip() for name in value):
        raise InvalidRequest("Each environment name must be a non-empty string.")
    names, seen = [name.strip() for name in value], set()
    for name in names:
        if name.lower() in seen:
            raise InvalidRequest(f"Duplicate environment name: '{name}'.")
        seen.add(name.lower())
    for name in names:
        apps.validate_environment_name(name)
    return names


def create_app(services, principal, body, meta):
    """Create an app with its data key and environments; return (app row, environment rows)."""
    name = clean_text(body.get("name"), "name", NAME_MAX)
    description = body.get("description")
    if description is not None:
        description = clean_text(description, "description", DESCRIPTION_MAX, required=False)
    env_names = environment_names(body.get("environments"))
    db = services.db
    with db.transaction():
        app_id = apps.create_app(db, services.vault, principal.organisation_id, name,
                                 description or "", env_names, **_creator_grant(principal))
        _record(db, principal, meta, "create", "app", app_id, app_id=app_id,
                details={"name": name})
    app = app_store.get_app(db, principal.organisation_id, app_id)
    return app, app_store.list_environments(db, app_id)


def update_app(services, principal, app, body, meta):
    """Rename an app or change its description; return the updated row."""
    raw_name, raw_description = body.get("name"), body.get("description")
    if raw_name is None and raw_description is None:
        raise InvalidRequest("At least one of 'name' or 'description' must be provided.")
    name = description = None
    if raw_name is not None:
        name = clean_text(raw_name, "name", NAME_MAX)
    if raw_description is not None:
        description = clean_text(raw_description, "description", DESCRIPTION_MAX,
                                 required=False) or ""
    db = services.db
    with db.transaction():
        apps.update_app(db, principal.organisation_id, app["id"], name, description)
        changed = [field for field, value in (("name", name), ("description", description))
                   if value is not None]
        _record(db, principal, meta, "update", "app", app["id"], app_id=app["id"],
                details={"fields": changed})
    return app_store.get_app(db, principal.organisation_id, app["id"])


def delete_app(services, principal, app, meta):
    """Delete an app with its environments, secrets and grants."""
    db = services.db
    with db.transaction():
        _record(db, principal, meta, "delete", "app", app["id"], app_id=app["id"],
                details={"name": app["name"]})
        apps.delete_app(db, app["id"])


# -- environments ----------------------------------------------------------------------------


def visible_environments(services, principal, app):
    """The app's environments the caller holds, in index order."""
    rows = app_store.list_environments(services.db, app["id"])
    if has_global_access(principal):
        return rows
    granted = services.auth.accessible_environment_ids(principal)
    return [row for row in rows if row["id"] in granted]


def check_environment_access(services, principal, env):
    """Phase's environment detail check (the texts differ from the secrets API's)."""
    if services.auth.can_access_environment(principal, env["id"]):
        return
    if principal.is_user:
        raise PermissionDenied("You don't have access to this environment.")
    raise PermissionDenied("Service account doesn't have access to this environment.")


def create_environment(services, principal, app, body, meta):
    """Add a custom environment at the end of the app's list; return its row."""
    name = body.get("name")
    if not name:
        raise InvalidRequest("Missing required field: name")
    db = services.db
    with db.transaction():
        env_id = apps.create_environment(db, services.vault, app["id"], name,
                                         **_creator_grant(principal))
        _record(db, principal, meta, "create", "environment", env_id, app_id=app["id"],
                environment_id=env_id, details={"name": name})
    return app_store.get_environment(db, principal.organisation_id, env_id)


def rename_environment(services, principal, env, body, meta):
    """Rename an environment (a name another environment of the app has is a conflict);
    return the updated row."""
    name = body.get("name")
    if not name:
        raise InvalidRequest("Missing required field: name")
    db = services.db
    with db.transaction():
        apps.rename_environment(db, env, name)
        _record(db, principal, meta, "update", "environment", env["id"], app_id=env["app_id"],
                environment_id=env["id"], details={"from": env["name"], "to": name})
    return app_store.get_environment(db, principal.organisation_id, env["id"])


def delete_environment(services, principal, env, meta):
    """Delete an environment with its secrets and grants."""
    db = services.db
    with db.transaction():
        _record(db, principal, meta, "delete", "environment", env["id"], app_id=env["app_id"],
                environment_id=env["id"], details={"name": env["name"]})
        apps.delete_environment(db, env)


# -- roles -----------------------------------------------------------------------------------


def list_roles(services, principal):
    return account_store.list_roles(services.db, principal.organisation_id)


def get_role(services, principal, role_id):
    if not isinstance(role_id, str):
        raise DoesNotExist("Role not found.")
    try:
        return account_store.get_role(services.db, principal.organisation_id, role_id)
    except NotFound:
        raise DoesNotExist("Role not found.") from None


def refuse_role_change(services, principal, role_id, action):
    """Every role is one of Phase's default roles, which cannot be changed or deleted."""
    get_role(services, principal, role_id)
    verb = "modified" if action == "update" else "deleted"
    raise PermissionDenied(f"Default roles cannot be {verb}.")


# -- service accounts ------------------------------------------------------------------------


def list_service_accounts(services, principal):
    return account_store.list_service_accounts(services.db, principal.organisation_id)


def get_service_account(services, principal, sa_id):
    try:
        return account_store.get_service_account(services.db, principal.organisation_id, sa_id)
    except NotFound:
        raise DoesNotExist("Service account not found.") from None


def manageable_service_account(services, principal, sa_id):
    """The service account whose tokens the caller may mint or revoke, as Phase's
    ``_caller_can_manage_sa_tokens`` decides: a user with global access, or the account itself.

    A minted token carries the account's access, so anyone else is told the account does not
    exist (a Manager of one environment must not become an account that holds Production).
    """
    sa = get_service_account(services, principal, sa_id)
    if has_global_access(principal) or (not principal.is_user
                                        and principal.account_id == sa["id"]):
        return sa
    raise DoesNotExist("Service account not found.")


def service_account_detail(services, principal, sa):
    """(tokens, apps) of a service account: its live tokens, newest first, and its apps with
    the environments it holds as ``[(app_id, app_name, [env rows])]``.

    Beyond Phase, a caller without global access sees only the environments it holds itself.
    """
    tokens = account_store.list_tokens(services.db, service_account_id=sa["id"])
    visible = None
    if not has_global_access(principal):
        visible = services.auth.accessible_environment_ids(principal)
    grouped = {}
    for row in account_store.service_account_grants(services.db, sa["id"]):
        if visible is None or row["id"] in visible:
            grouped.setdefault((row["app_id"], row["app_name"]), []).append(row)
    return tokens, [(app_id, name, envs) for (app_id, name), envs in grouped.items()]


def _refuse_global_role(role):
    if role["global_access"]:
        raise InvalidRequest(f"Service accounts cannot be assigned the '{role['name']}' role.")


def create_service_account(services, principal, body, meta):
    """Create a service account and its first token; return (account row, IssuedToken)."""
    name = clean_text(body.get("name"), "name", NAME_MAX)
    token_name = clean_text(body.get("token_name", DEFAULT_TOKEN_NAME), "token_name", NAME_MAX)
    role_id = body.get("role_id")
    if not role_id:
        raise InvalidRequest("Missing required field: role_id")
    role = get_role(services, principal, role_id)
    if body.get("team_id") is not None:
        raise PermissionDenied(TEAMS_UNAVAILABLE)
    _refuse_global_role(role)
    db = services.db
    with db.transaction():
        sa_id, token = accounts.create_service_account(
            db, principal.organisation_id, name, role["id"], token_name
        )
        _record(db, principal, meta, "create", "service_account", sa_id,
                details={"name": name, "role": role["name"], "token_id": token.id})
    return get_service_account(services, principal, sa_id), token


def update_service_account(services, principal, sa, body, meta):
    """Rename a service account or give it another role; return the updated row."""
    raw_name, role_id = body.get("name"), body.get("role_id")
    if raw_name is None and role_id is None:
        raise InvalidRequest("At least one of 'name' or 'role_id' must be provided.")
    name = clean_text(raw_name, "name", NAME_MAX) if raw_name is not None else None
    role = None
    if role_id is not None:
        role = get_role(services, principal, role_id)
        _refuse_global_role(role)
    db = services.db
    with db.transaction():
        account_store.update_service_account(db, sa["id"], name, role["id"] if role else None)
        _record(db, principal, meta, "update", "service_account", sa["id"],
                details={"name": name or sa["name"], "role": role["name"] if role else None})
    return get_service_account(services, principal, sa["id"])


def delete_service_account(services, principal, sa, meta):
    """Delete a service account; its tokens stop working at once and its grants go."""
    db = services.db
    with db.transaction():
        account_store.delete_service_account(db, sa["id"])
        _record(db, principal, meta, "delete", "service_account", sa["id"],
                details={"name": sa["name"]})


def set_access(services, principal, sa, body, meta):
    """Replace the service account's environment grants with ``body["apps"]``.

    ``[{"id": app_id, "environments": [env_id, ...]}, ...]``: every listed environment is
    granted and every other grant is revoked. A caller without global access may only grant
    apps and environments it holds itself, and (beyond Phase, which removes them) the grants in
    apps it cannot access stay as they are.
    """
    entries = body.get("apps")
    if entries is None:
        raise InvalidRequest("Missing required field: apps")
    if not isinstance(entries, list):
        raise InvalidRequest("'apps' must be a list.")
    desired = {}  # app id -> env ids; a repeated app keeps its last entry, as on Phase
    for entry in entries:
        app, env_ids = _access_entry(services, principal, entry)
        desired[app["id"]] = env_ids
    wanted = {env_id for env_ids in desired.values() for env_id in env_ids}
    db = services.db
    with db.transaction():
        current = _replaceable_grants(services, principal, sa)
        account_store.revoke_environments(db, sorted(current - wanted),
                                          service_account_id=sa["id"])
        for env_id in sorted(wanted - current):
            account_store.grant_environment(db, env_id, service_account_id=sa["id"])
        _record(db, principal, meta, "update_access", "service_account", sa["id"],
                details={"granted": sorted(wanted - current),
                         "revoked": sorted(current - wanted)})


def _replaceable_grants(services, principal, sa):
    """The account's granted environment ids an access replacement by the caller may revoke:
    all of them for a caller with global access, else those in apps the caller can access."""
    rows = account_store.service_account_grants(services.db, sa["id"])
    if has_global_access(principal):
        return {row["id"] for row in rows}
    return {row["id"] for row in rows
            if services.auth.can_access_app(principal, row["app_id"])}


def _access_entry(services, principal, entry):
    if not isinstance(entry, dict):
        raise InvalidRequest(
            "Each entry in 'apps' must be an object with 'id' and 'environments'."
        )
    app_id = entry.get("id")
    if not app_id:
        raise InvalidRequest("Each app entry must have an 'id' field.")
    try:
        if not isinstance(app_id, str):
            raise NotFound("app")
        app = app_store.get_app(services.db, principal.organisation_id, app_id)
    except NotFound:
        raise DoesNotExist(f"App not found: {app_id}") from None
    caller_global = has_global_access(principal)
    if not caller_global and not services.auth.can_access_app(principal, app["id"]):
        raise PermissionDenied(f"You don't have access to app '{app['name']}'.")
    env_ids = entry.get("environments")
    if not isinstance(env_ids, list):
        raise InvalidRequest(
            "Each app entry must have an 'environments' list of environment IDs."
        )
    if not env_ids:
        raise InvalidRequest(
            f"'environments' for app '{app_id}' must not be empty. To revoke all access, "
            "remove the app from the list."
        )
    app_env_ids = {env["id"] for env in app_store.list_environments(services.db, app["id"])}
    requested = list(dict.fromkeys(map(str, env_ids)))
    missing = [env_id for env_id in requested if env_id not in app_env_ids]
    if missing:
        raise DoesNotExist(f"Environment(s) not found in app '{app['name']}': "
                           f"{', '.join(missing)}")
    valid = set(requested)
    if not caller_global and not valid <= services.auth.accessible_environment_ids(principal):
        raise PermissionDenied(
            f"You don't have access to one or more environments in app '{app['name']}'."
        )
    return app, valid


# -- service-account tokens ------------------------------------------------------------------


def token_expiry(body):
    """The stored expiry of a new token from ``expires_at`` or ``expires_in`` (or None)."""
    if "expiry" in body:
        raise InvalidRequest(
            "Unknown field 'expiry'. Use 'expires_at' (ISO-8601 with timezone) or "
            "'expires_in' (positive integer seconds)."
        )
    expires_at, expires_in = body.get("expires_at"), body.get("expires_in")
    if expires_at is not None:  # wins over expires_in, as on Phase
        if not isinstance(expires_at, str):
            raise InvalidRequest(
                "'expires_at' must be an ISO-8601 datetime string with timezone "
                "(e.g. '2026-12-31T23:59:59Z')."
            )
        try:
            moment = datetime.fromisoformat(expires_at)
        except ValueError:
            raise InvalidRequest("'expires_at' is not a valid ISO-8601 datetime.") from None
        if moment.tzinfo is None:
            raise InvalidRequest(
                "'expires_at' must include a timezone offset (e.g. 'Z' or '+00:00')."
            )
        try:
            if moment <= datetime.now(timezone.utc):
                raise InvalidRequest("'expires_at' must be in the future.")
            return accounts.expiry_from(expires_at=moment)
        except OverflowError:
            raise InvalidRequest("'expires_at' is not a valid ISO-8601 datetime.") from None
    if expires_in is not None:
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            raise InvalidRequest(EXPIRES_IN_INVALID)
        try:
            return accounts.expiry_from(expires_in=expires_in)
        except OverflowError:
            raise InvalidRequest(EXPIRES_IN_INVALID) from None
    return None


def issue_token(services, principal, sa, body, meta):
    """Mint another token for a service account; return the IssuedToken (shown once)."""
    name = clean_text(body.get("name"), "name", NAME_MAX)
    expires_at = token_expiry(body)
    db = services.db
    with db.transaction():
        token = accounts.issue_token(db, "service", sa["id"], name, expires_at)
        _record(db, principal, meta, "create", "service_account_token", token.id,
                details={"service_account_id": sa["id"], "name": name,
                         "expires_at": expires_at})
    return token


def revoke_token(services, principal, sa, token_id, meta):
    """Revoke one of the service account's tokens; it stops working at once."""
    db = services.db
    with db.transaction():
        try:
            token = account_store.get_service_account_token(db, sa["id"], token_id)
        except NotFound:
            raise DoesNotExist("Token not found.") from None
        account_store.revoke_token(db, token["id"])
        _record(db, principal, meta, "delete", "service_account_token", token["id"],
                details={"service_account_id": sa["id"], "name": token["name"]})
