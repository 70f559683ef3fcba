"""The organisation, its roles, its users, and the environments granted to accounts.

Interface: as ``apps`` (whose module docstring says it once): ``services``, the caller
(``auth.Principal``), the request's fields as a dict, and ``meta`` (``audit.RequestMeta``).
Each write checks the caller's permission, validates first, and commits the change with its
audit event in one transaction. Service accounts are in ``service_accounts``, tokens of either
kind of account in ``tokens``.
"""

import json
from dataclasses import dataclass
from importlib import resources

from . import audit, tokens
from .apps import require
from .auth import local_operator
from .errors import DoesNotExist, InvalidRequest, PermissionDenied
from .store import NotFound, missing_as
from .store import accounts as account_store

DEFAULT_ORGANISATION = "phase_lite"
# Phase gates custom roles on the organisation's plan; phase_lite provides none, so it answers
# as a Phase organisation whose plan lacks them.
CUSTOM_ROLES_UNAVAILABLE = "Custom roles are not available on your organisation's plan."


def default_roles():
    """The five default roles, as Phase defines them."""
    text = resources.files("phase_lite").joinpath("default_roles.json").read_text()
    return json.loads(text)


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
        issued = tokens.mint_token(db, "user", user_id, "Owner token")
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
    with missing_as(DoesNotExist("Role not found.")):
        return account_store.get_role(services.db, principal.organisation_id, role_id)


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
    """A live user by email, or by id (the admin command takes either)."""
    org_id = principal.organisation_id
    try:
        return account_store.get_user_by_email(services.db, org_id, email)
    except NotFound:
        pass
    with missing_as(DoesNotExist(f"No user with email or id '{email}' "
                                 "('phase-lite users list' shows them).")):
        return account_store.get_user(services.db, org_id, email)


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
    with missing_as(DoesNotExist("User not found.")):
        return account_store.get_user(services.db, principal.organisation_id, user_id)


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


# -- environment grants ----------------------------------------------------------------------


def check_may_grant(services, principal, app, env_ids):
    """Refuse unless the caller holds every environment it grants (or sees everything)."""
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
    check_may_grant(services, principal, app, set(env_ids))
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

