"""Service accounts: their roles, their environment access, and their first token.

Interface: as ``apps`` (whose module docstring says it once). Each write checks the caller's
permission, validates first, and commits the change with its audit event in one transaction.
"""

from . import audit, contract, tokens
from .accounts import check_may_grant, get_role
from .apps import require, visible_environment_ids
from .errors import DoesNotExist, InvalidRequest, PermissionDenied
from .store import NotFound, missing_as
from .store import accounts as account_store
from .store import apps as app_store
from .textfields import validate_text_field as clean_text

# Phase gates teams on the organisation's plan; phase_lite provides none.
TEAMS_UNAVAILABLE = "Teams are not available on your organisation's plan."


def list_service_accounts(services, principal):
    return account_store.list_service_accounts(services.db, principal.organisation_id)


def get_service_account(services, principal, sa_id):
    with missing_as(DoesNotExist("Service account not found.")):
        return account_store.get_service_account(services.db, principal.organisation_id, sa_id)


def service_account_by_id_or_name(services, principal, id_or_name):
    """A live service account by id, or by a name only one account has (the admin command's
    way: an ambiguous name is refused, never guessed)."""
    org_id = principal.organisation_id
    try:
        return account_store.get_service_account(services.db, org_id, id_or_name)
    except NotFound:
        pass
    named = [row for row in account_store.list_service_accounts(services.db, org_id)
             if row["name"] == id_or_name]
    if len(named) > 1:
        raise InvalidRequest(f"{len(named)} service accounts are named {id_or_name}: use the id.")
    if not named:
        raise DoesNotExist(f"No service account '{id_or_name}'.")
    return named[0]




def service_account_detail(services, principal, sa):
    """(tokens, apps) of a service account: its live tokens, newest first, and its apps with
    the environments it holds as ``[(app_id, app_name, [env rows])]``.

    Beyond Phase, a caller who does not see everything sees only the environments it holds
    itself.
    """
    tokens = account_store.list_tokens(services.db, service_account_id=sa["id"])
    visible = visible_environment_ids(services, principal)
    grouped = {}
    for row in account_store.service_account_grants(services.db, sa["id"]):
        if visible is None or row["id"] in visible:
            grouped.setdefault((row["app_id"], row["app_name"]), []).append(row)
    return tokens, [(app_id, name, envs) for (app_id, name), envs in grouped.items()]


def visible_service_account_ids(services, principal) -> set | None:
    """The ids of the service accounts a caller may know by name, or None for every one: a
    caller who may read service accounts sees them all (``GET /v1/service-accounts/`` lists
    them), any other those holding an environment the caller holds (what
    ``service_account_detail`` shows of an account)."""
    if principal.sees_everything or principal.may("ServiceAccounts", "read"):
        return None
    return account_store.service_accounts_holding(services.db,
                                                  visible_environment_ids(services, principal))


def _refuse_global_role(role):
    if role["global_access"]:
        raise InvalidRequest(f"Service accounts cannot be assigned the '{role['name']}' role.")


def create_service_account(services, principal, fields, meta):
    """Create a service account (``name``, ``role_id``, optional ``token_name``) and its first
    token; return (account row, IssuedToken)."""
    require(principal, "ServiceAccounts", "create", "service accounts")
    name = clean_text(fields.get("name"), "name", contract.NAME_MAX)
    token_name = clean_text(fields.get("token_name", contract.DEFAULT_TOKEN_NAME), "token_name",
                            contract.NAME_MAX)
    role_id = fields.get("role_id")
    if not role_id:
        raise InvalidRequest("Missing required field: role_id")
    role = get_role(services, principal, role_id)
    if fields.get("team_id") is not None:
        raise PermissionDenied(TEAMS_UNAVAILABLE)
    _refuse_global_role(role)
    db = services.db
    with db.transaction():
        sa_id = account_store.insert_service_account(db, principal.organisation_id, name,
                                                     role["id"])
        token = tokens.mint_token(db, "service", sa_id, token_name)
        audit.record(db, principal, meta, "create", "service_account", sa_id,
                     details={"name": name, "role": role["name"], "token_id": token.id})
    return get_service_account(services, principal, sa_id), token


def update_service_account(services, principal, sa, fields, meta):
    """Rename a service account or give it another role; return the updated row."""
    require(principal, "ServiceAccounts", "update", "service accounts")
    raw_name, role_id = fields.get("name"), fields.get("role_id")
    if raw_name is None and role_id is None:
        raise InvalidRequest("At least one of 'name' or 'role_id' must be provided.")
    name = clean_text(raw_name, "name", contract.NAME_MAX) if raw_name is not None else None
    role = None
    if role_id is not None:
        role = get_role(services, principal, role_id)
        _refuse_global_role(role)
    db = services.db
    with db.transaction():
        account_store.update_service_account(db, sa["id"], name, role["id"] if role else None)
        audit.record(db, principal, meta, "update", "service_account", sa["id"],
                     details={"name": name or sa["name"], "role": role["name"] if role else None})
    return get_service_account(services, principal, sa["id"])


def delete_service_account(services, principal, sa, meta):
    """Delete a service account; its tokens stop working at once and its grants go."""
    require(principal, "ServiceAccounts", "delete", "service accounts")
    db = services.db
    with db.transaction():
        account_store.delete_service_account(db, sa["id"])
        audit.record(db, principal, meta, "delete", "service_account", sa["id"],
                     details={"name": sa["name"]})



def set_service_account_access(services, principal, sa, fields, meta):
    """Replace the service account's environment grants with ``fields["apps"]``.

    ``[{"id": app_id, "environments": [env_id, ...]}, ...]``: every listed environment is
    granted and every other grant is revoked. A caller who does not see everything may only
    grant apps and environments it holds itself, and (beyond Phase, which removes them) the
    grants in apps it cannot access stay as they are.
    """
    require(principal, "ServiceAccounts", "update", "service accounts")
    entries = fields.get("apps")
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
        audit.record(db, principal, meta, "update_access", "service_account", sa["id"],
                     details={"granted": sorted(wanted - current),
                              "revoked": sorted(current - wanted)})


def _replaceable_grants(services, principal, sa):
    """The account's granted environment ids an access replacement by the caller may revoke:
    all of them for a caller who sees everything, else those in apps the caller can access."""
    rows = account_store.service_account_grants(services.db, sa["id"])
    if principal.sees_everything:
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
    with missing_as(DoesNotExist(f"App not found: {app_id}")):
        app = app_store.get_app(services.db, principal.organisation_id, app_id)
    if not principal.sees_everything and not services.auth.can_access_app(principal, app["id"]):
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
    check_may_grant(services, principal, app, set(requested))
    return app, set(requested)

