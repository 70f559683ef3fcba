"""Helpers the tests share: accounts, apps and tokens made through the domain layer, as the
local operator (what the admin command does), so fixtures follow the same rules as the code."""

from phase_lite import accounts, apps
from phase_lite.accounts import Grantee
from phase_lite.audit import RequestMeta
from phase_lite.store import accounts as account_store

TEST_META = RequestMeta(ip_address=None, user_agent="pytest", channel="cli")


def operator(services):
    return accounts.operator(services, "pytest")


def make_app(services, name="demo", env_names=None):
    """An app (default environments unless names are given); return (row, {name: env row})."""
    fields = {"name": name, "environments": list(env_names) if env_names else None}
    app, envs = apps.create_app(services, operator(services), fields, TEST_META)
    return app, {env["name"]: env for env in envs}


def grant(services, grantee, env_rows):
    """Give the account the environments (rows, of any apps)."""
    by_app = {}
    for env in env_rows:
        by_app.setdefault(env["app_id"], []).append(env)
    for app_id, envs in by_app.items():
        app = apps.app_in_scope(services, operator(services), app_id)
        accounts.grant_environments(services, operator(services), grantee, app, envs, TEST_META)


def make_user(services, email, role="Developer", env_rows=()):
    """A user with the role and environments and a personal token; return (row, IssuedToken)."""
    by = operator(services)
    role_row = accounts.role_by_name(services, by, role)
    user = accounts.create_user(services, by, {"email": email, "role_id": role_row["id"]},
                                TEST_META)
    grant(services, Grantee.of_user(user), env_rows)
    return user, user_token(services, user, f"{email} token")


def user_token(services, user, name="token", expires_at=None):
    """Another personal token of ``user`` (a row or an email); ``expires_at`` may be past."""
    if isinstance(user, str):
        user = accounts.user_by_email(services, operator(services), user)
    issued = accounts.issue_user_token(services, operator(services), user, {"name": name},
                                       TEST_META)
    return _expire(services, issued, expires_at)


def make_service_account(services, name="ci", role="Service", env_rows=(), expires_at=None):
    """A service account with the role and environments; return (row, IssuedToken)."""
    by = operator(services)
    role_row = accounts.role_by_name(services, by, role)
    sa, issued = accounts.create_service_account(
        services, by, {"name": name, "role_id": role_row["id"]}, TEST_META)
    grant(services, Grantee.of_service_account(sa), env_rows)
    return sa, _expire(services, issued, expires_at)


def revoke(services, token_id):
    accounts.revoke_token(services, operator(services), token_id, TEST_META)


def _expire(services, issued, expires_at):
    """Set a token's expiry directly: the domain refuses one in the past, tests need it."""
    if expires_at is None:
        return issued
    with services.db.transaction():
        services.db.execute("UPDATE tokens SET expires_at = ? WHERE id = ?",
                            (expires_at, issued.id))
    return type(issued)(**(vars(issued) | {"expires_at": expires_at}))


def organisation(services):
    return account_store.get_organisation(services.db)


def organisation_id(services):
    return organisation(services)["id"]


def prefix_middleware(flask_app):
    """The layer that answers GETs before Flask (under the access log and metrics wrappers)."""
    layer = flask_app.wsgi_app
    while not hasattr(layer, "direct_gets"):
        layer = layer.wsgi_app
    return layer


def without_fast_path(flask_app):
    """Send every request through Flask's view (the fast path's answers, for comparison)."""
    prefix_middleware(flask_app).direct_gets.clear()
