"""The organisation, its roles, users, service accounts, tokens and environment grants.

Interface: as ``apps`` (whose module docstring says it once): ``services``, the caller
(``auth.Principal``), the request's fields as a dict, and ``meta`` (``audit.RequestMeta``).
Each write checks the caller's permission, validates first, and commits the change with its
audit event in one transaction. A token's secret part exists only in the ``IssuedToken``
returned once; the store keeps its hash.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources

from . import audit, contract, phase_crypto
from .apps import require
from .auth import local_operator
from .errors import DoesNotExist, InvalidRequest, PermissionDenied
from .store import NotFound, format_time
from .store import accounts as account_store
from .store import apps as app_store
from .textfields import validate_text_field as clean_text

DEFAULT_ORGANISATION = "phase_lite"
# Phase gates custom roles and teams on the organisation's plan; phase_lite provides neither,
# so it answers as a Phase organisation whose plan lacks them.
CUSTOM_ROLES_UNAVAILABLE = "Custom roles are not available on your organisation's plan."
TEAMS_UNAVAILABLE = "Teams are not available on your organisation's plan."
EXPIRES_IN_INVALID = "'expires_in' must be a positive integer (seconds)."


def default_roles():
    """The five default roles, as Phase defines them."""
    text = resources.files("phase_lite").joinpath("default_roles.json").read_text()
    return json.loads(text)


@dataclass(frozen=True)
class IssuedToken:
    id: str
    name: str
    created_at: str
    expires_at: str | None
    token: str           # the full pss_* string, shown once
    bearer_token: str    # "<Type> <bearer>", the REST form


@dataclass(frozen=True)
class Grantee:
    """An account environments are granted to: ``kind`` "user" or "service"."""
    kind: str
    id: str
    label: str   # email or name, for messages

    @classmethod
    def of_user(cls, row):
        return cls("user", row["id"], row["email"])

    @classmethod
    def of_service_account(cls, row):
        return cls("service", row["id"], row["name"])

    def account_filter(self) -> dict:
        return {"user_id": self.id} if self.kind == "user" else {"service_account_id": self.id}


# -- the organisation ------------------------------------------------------------------------


def is_initialised(db) -> bool:
    return account_store.get_organisation(db) is not None


def organisation(db):
    org = account_store.get_organisation(db)
    if org is None:
        raise DoesNotExist("Organisation not found")
    return org


def operator(services, name=None):
    """The admin command's caller: the local operator, an Owner named ``name`` (by default
    the login running the command) in the audit events it causes."""
    org = organisation(services.db)
    owner_role = account_store.get_role_by_name(services.db, org["id"], "Owner")
    return local_operator(org, owner_role, name or audit.operator_name())


def initialise(db, owner_email: str, meta=audit.CLI_META):
    """Create the organisation, default roles, the Owner and their first token.

    Return the IssuedToken, or None when the database was already initialised.
    """
    with db.transaction():
        if is_initialised(db):
            return None
        org_id = account_store.insert_organisation(db, DEFAULT_ORGANISATION)
        for role in default_roles():
            perms = role["permissions"]
            account_store.insert_role(
                db, org_id, role["name"], role["description"], role["color"],
                json.dumps(perms, separators=(",", ":")), perms.get("globalAccess", False),
            )
        owner_role = account_store.get_role_by_name(db, org_id, "Owner")
        user_id = account_store.insert_user(db, org_id, owner_email, owner_role["id"])
        issued = _mint_token(db, "user", user_id, "Owner token")
        by = local_operator(organisation(db), owner_role, audit.operator_name())
        audit.record(db, by, meta, "initialise", "organisation", org_id,
                     details={"owner": user_id, "token_id": issued.id})
        return issued


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


def role_by_name(services, principal, name):
    try:
        return account_store.get_role_by_name(services.db, principal.organisation_id, name)
    except NotFound:
        names = ", ".join(r["name"] for r in list_roles(services, principal))
        raise InvalidRequest(f"Unknown role '{name}'. Roles: {names}.") from None


def refuse_role_change(services, principal, role_id, action):
    """Every role is one of Phase's default roles, which cannot be changed or deleted."""
    get_role(services, principal, role_id)
    verb = "modified" if action == "update" else "deleted"
    raise PermissionDenied(f"Default roles cannot be {verb}.")


# -- users -----------------------------------------------------------------------------------


def list_users(services, principal):
    require(principal, "Members", "read", "members")
    return account_store.list_users(services.db, principal.organisation_id)


def user_by_email(services, principal, email):
    try:
        return account_store.get_user_by_email(services.db, principal.organisation_id, email)
    except NotFound:
        raise DoesNotExist(f"No user with email '{email}'.") from None


def create_user(services, principal, fields, meta):
    """Add a user (``email``, ``role_id``); return the user's row."""
    require(principal, "Members", "create", "members")
    email = (fields.get("email") or "").strip()
    if "@" not in email:
        raise InvalidRequest("A user needs an email address.")
    role = get_role(services, principal, fields.get("role_id"))
    db = services.db
    with db.transaction():
        try:
            account_store.get_user_by_email(db, principal.organisation_id, email)
        except NotFound:
            user_id = account_store.insert_user(db, principal.organisation_id, email, role["id"])
            audit.record(db, principal, meta, "create", "user", user_id,
                         details={"role": role["name"]})
            return account_store.get_user(db, principal.organisation_id, user_id)
        raise InvalidRequest(f"A user with email '{email}' already exists.")


# The order of the default roles, highest first: a member may give or change only roles and
# members at or below their own.
ROLE_RANK = {"Owner": 0, "Admin": 1, "Manager": 2, "Developer": 3, "Service": 4}


def assignable_roles(services, principal):
    """The roles the caller may give a user: none above its own, never Service."""
    mine = ROLE_RANK.get(principal.role_name, len(ROLE_RANK))
    return [role for role in list_roles(services, principal)
            if role["name"] != "Service" and ROLE_RANK.get(role["name"], 0) >= mine]


def check_assignable_role(services, principal, role_id):
    role = get_role(services, principal, role_id)
    if role["id"] not in {row["id"] for row in assignable_roles(services, principal)}:
        raise PermissionDenied(f"You cannot give the '{role['name']}' role.")
    return role


def get_user(services, principal, user_id):
    try:
        return account_store.get_user(services.db, principal.organisation_id, user_id)
    except NotFound:
        raise DoesNotExist("User not found.") from None


def _check_may_manage(services, principal, user):
    if principal.kind == "user" and user["id"] == principal.account_id:
        raise InvalidRequest("You cannot change or remove your own membership.")
    role = get_role(services, principal, user["role_id"])
    if ROLE_RANK.get(role["name"], 0) < ROLE_RANK.get(principal.role_name, len(ROLE_RANK)):
        raise PermissionDenied("You cannot change a member whose role is above yours.")


def change_user_role(services, principal, user, fields, meta):
    """Give a user another role (``role_id``); return the updated row."""
    require(principal, "Members", "update", "members")
    _check_may_manage(services, principal, user)
    role = check_assignable_role(services, principal, fields.get("role_id"))
    db = services.db
    with db.transaction():
        account_store.set_user_role(db, user["id"], role["id"])
        audit.record(db, principal, meta, "update", "user", user["id"],
                     details={"role": role["name"]})
    return get_user(services, principal, user["id"])


def delete_user(services, principal, user, meta):
    """Delete a user: their tokens stop working at once, their grants and personal overrides
    go, their console sessions and sign-in links end. The organisation's last Owner cannot be
    deleted; a user may not delete themselves or a member whose role is above theirs."""
    require(principal, "Members", "delete", "members")
    _check_may_manage(services, principal, user)
    db = services.db
    with db.transaction():
        role = account_store.get_role(db, principal.organisation_id, user["role_id"])
        if (role["name"] == "Owner"
                and account_store.count_users_with_role(db, principal.organisation_id,
                                                        role["id"]) <= 1):
            raise PermissionDenied(
                f"{user['email']} is the last Owner and cannot be deleted; make another user "
                "an Owner first.")
        account_store.delete_user(db, user["id"])
        audit.record(db, principal, meta, "delete", "user", user["id"],
                     details={"role": role["name"]})


# -- service accounts ------------------------------------------------------------------------


def list_service_accounts(services, principal):
    return account_store.list_service_accounts(services.db, principal.organisation_id)


def get_service_account(services, principal, sa_id):
    try:
        return account_store.get_service_account(services.db, principal.organisation_id, sa_id)
    except NotFound:
        raise DoesNotExist("Service account not found.") from None


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


def check_may_manage_tokens(principal, sa):
    """Refuse, as Phase's ``_caller_can_manage_sa_tokens`` does, unless the caller sees
    everything (Owner, Admin, the local operator) or is the service account itself.

    A minted token carries the account's access, so anyone else is told the account does not
    exist (a Manager of one environment must not become an account that holds Production).
    """
    if principal.sees_everything or (not principal.is_user and principal.account_id == sa["id"]):
        return
    raise DoesNotExist("Service account not found.")


def service_account_detail(services, principal, sa):
    """(tokens, apps) of a service account: its live tokens, newest first, and its apps with
    the environments it holds as ``[(app_id, app_name, [env rows])]``.

    Beyond Phase, a caller who does not see everything sees only the environments it holds
    itself.
    """
    tokens = account_store.list_tokens(services.db, service_account_id=sa["id"])
    visible = None
    if not principal.sees_everything:
        visible = services.auth.accessible_environment_ids(principal)
    grouped = {}
    for row in account_store.service_account_grants(services.db, sa["id"]):
        if visible is None or row["id"] in visible:
            grouped.setdefault((row["app_id"], row["app_name"]), []).append(row)
    return tokens, [(app_id, name, envs) for (app_id, name), envs in grouped.items()]


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
        token = _mint_token(db, "service", sa_id, token_name)
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


# -- environment grants ----------------------------------------------------------------------


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
    try:
        if not isinstance(app_id, str):
            raise NotFound("app")
        app = app_store.get_app(services.db, principal.organisation_id, app_id)
    except NotFound:
        raise DoesNotExist(f"App not found: {app_id}") from None
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
    _check_may_grant(services, principal, app, set(requested))
    return app, set(requested)


def _check_may_grant(services, principal, app, env_ids):
    if principal.sees_everything:
        return
    if not env_ids <= services.auth.accessible_environment_ids(principal):
        raise PermissionDenied(
            f"You don't have access to one or more environments in app '{app['name']}'."
        )


def _grant_permission(grantee):
    if grantee.kind == "user":
        return "Members", "update", "members"
    return "ServiceAccounts", "update", "service accounts"


def grant_environments(services, principal, grantee: Grantee, app, envs, meta):
    """Let ``grantee`` use the app's environments ``envs`` (rows) as well as what it holds.

    Return the ids of the environments newly granted (the others were held already)."""
    require(principal, *_grant_permission(grantee))
    env_ids = [env["id"] for env in envs]
    _check_may_grant(services, principal, app, set(env_ids))
    db = services.db
    with db.transaction():
        held = account_store.granted_environment_ids(db, **grantee.account_filter())
        granted = [env_id for env_id in env_ids if env_id not in held]
        for env_id in granted:
            account_store.grant_environment(db, env_id, **grantee.account_filter())
        audit.record(db, principal, meta, "grant_access", _resource_type(grantee), grantee.id,
                     app_id=app["id"], details={"granted": granted})
    return granted


def revoke_environments(services, principal, grantee: Grantee, app, envs, meta):
    """Take the app's environments ``envs`` (rows) away from ``grantee``.

    Return the ids of the environments revoked (the others were not held)."""
    require(principal, *_grant_permission(grantee))
    db = services.db
    with db.transaction():
        held = account_store.granted_environment_ids(db, **grantee.account_filter())
        revoked = [env["id"] for env in envs if env["id"] in held]
        account_store.revoke_environments(db, revoked, **grantee.account_filter())
        audit.record(db, principal, meta, "revoke_access", _resource_type(grantee), grantee.id,
                     app_id=app["id"], details={"revoked": revoked})
    return revoked


def _resource_type(grantee):
    return "user" if grantee.kind == "user" else "service_account"


# -- tokens ----------------------------------------------------------------------------------


def expiry_from(expires_in: int | None = None, expires_at: datetime | None = None):
    if expires_in is not None:
        return format_time(datetime.now(timezone.utc) + timedelta(seconds=expires_in))
    if expires_at is not None:
        return format_time(expires_at)
    return None


def token_expiry(fields):
    """The stored expiry of a new token from ``expires_at`` or ``expires_in`` (or None)."""
    if "expiry" in fields:
        raise InvalidRequest(
            "Unknown field 'expiry'. Use 'expires_at' (ISO-8601 with timezone) or "
            "'expires_in' (positive integer seconds)."
        )
    expires_at, expires_in = fields.get("expires_at"), fields.get("expires_in")
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
            return expiry_from(expires_at=moment)
        except OverflowError:
            raise InvalidRequest("'expires_at' is not a valid ISO-8601 datetime.") from None
    if expires_in is not None:
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            raise InvalidRequest(EXPIRES_IN_INVALID)
        try:
            return expiry_from(expires_in=expires_in)
        except OverflowError:
            raise InvalidRequest(EXPIRES_IN_INVALID) from None
    return None


def _mint_token(db, kind: str, owner_id: str, name: str, expires_at: str | None = None):
    """Mint a Phase token with real key material; only its hash is stored."""
    minted = phase_crypto.mint_token(kind)
    token_id = account_store.insert_token(
        db, kind, owner_id, name, phase_crypto.hash_bearer(minted.bearer),
        minted.public_key, minted.wrapped_key_share, expires_at,
    )
    row = account_store.get_token(db, token_id)
    return IssuedToken(
        id=token_id, name=name, created_at=row["created_at"], expires_at=expires_at,
        token=minted.token, bearer_token=f"{phase_crypto.bearer_type(kind)} {minted.bearer}",
    )


def issue_service_account_token(services, principal, sa, fields, meta):
    """Mint another token (``name``, ``expires_at`` or ``expires_in``) for a service account;
    return the IssuedToken (shown once)."""
    require(principal, "ServiceAccountTokens", "create", "service account tokens")
    check_may_manage_tokens(principal, sa)
    return _issue_token(services, principal, "service", sa["id"], fields, meta,
                        "service_account_token", {"service_account_id": sa["id"]})


def issue_user_token(services, principal, user, fields, meta):
    """Mint a personal access token (``name``, ``expires_at`` or ``expires_in``) for a user;
    return the IssuedToken (shown once)."""
    own = principal.kind == "user" and principal.account_id == user["id"]
    if not own:  # one's own token needs no permission over other members
        require(principal, "MemberPersonalAccessTokens", "create",
                "member personal access tokens")
    return _issue_token(services, principal, "user", user["id"], fields, meta, "user_token",
                        {"user_id": user["id"]})


def _issue_token(services, principal, kind, owner_id, fields, meta, resource_type, details):
    name = clean_text(fields.get("name"), "name", contract.NAME_MAX)
    expires_at = token_expiry(fields)
    db = services.db
    with db.transaction():
        token = _mint_token(db, kind, owner_id, name, expires_at)
        audit.record(db, principal, meta, "create", resource_type, token.id,
                     details=details | {"name": name, "expires_at": expires_at})
    return token


def revoke_service_account_token(services, principal, sa, token_id, meta):
    """Revoke one of the service account's tokens; it stops working at once."""
    require(principal, "ServiceAccountTokens", "delete", "service account tokens")
    check_may_manage_tokens(principal, sa)
    db = services.db
    with db.transaction():
        try:
            token = account_store.get_service_account_token(db, sa["id"], token_id)
        except NotFound:
            raise DoesNotExist("Token not found.") from None
        _revoke(db, principal, meta, token)


def revoke_token(services, principal, token_id, meta):
    """Revoke a live token of the organisation, of either kind, by id."""
    db = services.db
    with db.transaction():
        token = _live_token(db, principal.organisation_id, token_id)
        if token["kind"] == "user" and not (principal.kind == "user"
                                            and token["user_id"] == principal.account_id):
            # one's own token needs no permission over other members
            require(principal, "MemberPersonalAccessTokens", "delete",
                    "member personal access tokens")
        else:
            require(principal, "ServiceAccountTokens", "delete", "service account tokens")
            check_may_manage_tokens(principal, {"id": token["service_account_id"]})
        _revoke(db, principal, meta, token)


def _live_token(db, org_id, token_id):
    try:
        token = account_store.get_token(db, token_id)
        if token["revoked_at"] is not None:
            raise NotFound("token")
        if token["user_id"]:
            account_store.get_user(db, org_id, token["user_id"])
        else:
            account_store.get_service_account(db, org_id, token["service_account_id"])
    except NotFound:
        raise DoesNotExist(f"No active token with id '{token_id}'.") from None
    return token


def _revoke(db, principal, meta, token):
    account_store.revoke_token(db, token["id"])
    if token["kind"] == "user":
        resource_type, owner = "user_token", {"user_id": token["user_id"]}
    else:
        resource_type = "service_account_token"
        owner = {"service_account_id": token["service_account_id"]}
    audit.record(db, principal, meta, "delete", resource_type, token["id"],
                 details=owner | {"name": token["name"]})
