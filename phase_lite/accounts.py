"""Organisation set-up, users, service accounts, their tokens and access grants.

One domain layer for the ``phase-lite`` admin command and the management API.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib import resources

from . import phase_crypto
from .errors import DoesNotExist, InvalidRequest
from .store import NotFound, format_time
from .store import accounts as account_store
from .store import apps as app_store

DEFAULT_ORGANISATION = "phase_lite"


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


def is_initialised(db) -> bool:
    return account_store.get_organisation(db) is not None


def organisation(db):
    org = account_store.get_organisation(db)
    if org is None:
        raise DoesNotExist("Organisation not found")
    return org


def initialise(db, owner_email: str):
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
        return issue_token(db, "user", user_id, "Owner token")


def expiry_from(expires_in: int | None = None, expires_at: datetime | None = None):
    if expires_in is not None:
        return format_time(datetime.now(timezone.utc) + timedelta(seconds=expires_in))
    if expires_at is not None:
        return format_time(expires_at)
    return None


def issue_token(db, kind: str, owner_id: str, name: str, expires_at: str | None = None):
    """Mint a Phase token with real key material; only its hash is stored."""
    minted = phase_crypto.mint_token(kind)
    with db.transaction():
        token_id = account_store.insert_token(
            db, kind, owner_id, name, phase_crypto.hash_bearer(minted.bearer),
            minted.public_key, minted.wrapped_key_share, expires_at,
        )
        row = account_store.get_token(db, token_id)
    return IssuedToken(
        id=token_id, name=name, created_at=row["created_at"], expires_at=expires_at,
        token=minted.token, bearer_token=f"{phase_crypto.bearer_type(kind)} {minted.bearer}",
    )


# -- users -----------------------------------------------------------------------------------


def role_by_name(db, org_id, name):
    try:
        return account_store.get_role_by_name(db, org_id, name)
    except NotFound:
        names = ", ".join(r["name"] for r in account_store.list_roles(db, org_id))
        raise InvalidRequest(f"Unknown role '{name}'. Roles: {names}.") from None


def create_user(db, email: str, role_name: str):
    email = (email or "").strip()
    if "@" not in email:
        raise InvalidRequest("A user needs an email address.")
    org = organisation(db)
    with db.transaction():
        role = role_by_name(db, org["id"], role_name)
        try:
            account_store.get_user_by_email(db, org["id"], email)
        except NotFound:
            return account_store.insert_user(db, org["id"], email, role["id"])
        raise InvalidRequest(f"A user with email '{email}' already exists.")


def user_by_email(db, email):
    try:
        return account_store.get_user_by_email(db, organisation(db)["id"], email)
    except NotFound:
        raise DoesNotExist(f"No user with email '{email}'.") from None


def revoke_token(db, token_id):
    with db.transaction():
        if not account_store.revoke_token(db, token_id):
            raise DoesNotExist(f"No active token with id '{token_id}'.")


# -- service accounts ------------------------------------------------------------------------


def create_service_account(db, org_id, name, role_id, token_name="Default", expires_at=None):
    """Create a service account with one token; return (account id, IssuedToken)."""
    with db.transaction():
        sa_id = account_store.insert_service_account(db, org_id, name, role_id)
        token = issue_token(db, "service", sa_id, token_name, expires_at)
    return sa_id, token


def service_account(db, id_or_name):
    """A live service account by id, or by a name only one account has."""
    org_id = organisation(db)["id"]
    try:
        return account_store.get_service_account(db, org_id, id_or_name)
    except NotFound:
        pass
    named = [row for row in account_store.list_service_accounts(db, org_id)
             if row["name"] == id_or_name]
    if len(named) > 1:
        raise InvalidRequest(
            f"{len(named)} service accounts are named {id_or_name}: use the id.")
    if not named:
        raise DoesNotExist(f"No service account '{id_or_name}'.")
    return named[0]


def grant_environments(db, env_ids, *, user_id=None, service_account_id=None):
    with db.transaction():
        for env_id in env_ids:
            account_store.grant_environment(
                db, env_id, user_id=user_id, service_account_id=service_account_id
            )


def resolve_environments(db, org_id, app_id, env_names):
    """Environment rows of an app by name (case-insensitive); all of them when names is empty."""
    try:
        app = app_store.get_app(db, org_id, app_id)
    except NotFound:
        matches = app_store.find_apps_by_name(db, org_id, app_id)
        if len(matches) > 1:
            raise InvalidRequest(f"{len(matches)} apps are named {app_id}: use the id.") from None
        if not matches:
            raise DoesNotExist(f"App with ID {app_id} not found") from None
        app = matches[0]
    if not env_names:
        return app, app_store.list_environments(db, app["id"])
    envs = []
    for name in env_names:
        env = app_store.find_environment(db, app["id"], name)
        if env is None:
            raise DoesNotExist(f"Environment '{name}' not found in App {app['id']}")
        envs.append(env)
    return app, envs
