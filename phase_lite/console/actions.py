"""What the console may do, as the signed-in user: every call into the domain layer is here.

Each function takes a ``Caller`` (services, the session's principal, the request's meta) and
applies the same checks as the API's views before calling the same domain function, so the
console has the API's roles, grants, validation, messages and audit events. Keeping these
call sites in one module keeps the console's pages free of domain rules.
"""

from contextlib import contextmanager
from dataclasses import dataclass

from .. import (accounts, apps, audit, conditional, history, lockbox, mirror, secrets, tokens,
               webauth)
from .. import service_accounts as sa_domain
from ..accounts import Grantee
from ..errors import DoesNotExist, PreconditionFailed
from ..store import now
from ..store import accounts as account_store
from ..store import console as console_store
from ..store import secrets as secret_store
from . import dotenv, sessions


@dataclass(frozen=True)
class Caller:
    services: object
    principal: object
    meta: object
    session_id: str | None = None


def _require(caller, resource, action, noun, *, app_level=False):
    apps.require(caller.principal, resource, action, noun, app_level=app_level)


# -- apps and environments -------------------------------------------------------------------


def visible_apps(caller):
    _require(caller, "Apps", "read", "apps")
    return apps.visible_apps(caller.services, caller.principal)


def create_app(caller, name, description):
    app_row, _ = apps.create_app(caller.services, caller.principal,
                                 {"name": name, "description": description or None},
                                 caller.meta)
    return app_row


def app(caller, app_id):
    _require(caller, "Apps", "read", "apps")
    return apps.app_in_scope(caller.services, caller.principal, app_id)


def environments(caller, app_row):
    return apps.visible_environments(caller.services, caller.principal, app_row)


def require(caller, resource, action, noun, *, app_level=False):
    """Refuse a page whose only purpose is an action the caller's role does not grant."""
    _require(caller, resource, action, noun, app_level=app_level)


def update_app(caller, app_row, name, description):
    """Rename and describe an app (the API's PATCH)."""
    return apps.update_app(caller.services, caller.principal, app_row,
                           {"name": name, "description": description or ""}, caller.meta)


def delete_app(caller, app_row):
    apps.delete_app(caller.services, caller.principal, app_row, caller.meta)


def mirror_of(caller, app_row):
    """The source of a mirrored app and its last sync, or None."""
    return mirror.mirror_of_app(caller.services, caller.principal, app_row)


def sync_mirror(caller, app_row):
    return mirror.sync_app_source(caller.services, caller.principal, app_row, caller.meta)


def encryption(caller, app_row):
    """What protects the app's secrets: the cipher, the master key wrapping its data key, and
    when that data key was made (``rotated_at`` None: the app's first key)."""
    _require(caller, "EncryptionMode", "read", "the encryption mode", app_level=True)
    keyring = caller.services.vault.keyring
    return {"master_key_id": keyring.wrapped_key_id(app_row["wrapped_data_key"]),
            "created_at": app_row["created_at"], "rotated_at": app_row["data_key_rotated_at"]}


def create_environment(caller, app_row, name):
    return apps.create_environment(caller.services, caller.principal, app_row, {"name": name},
                                   caller.meta)


def rename_environment(caller, env, name):
    return apps.rename_environment(caller.services, caller.principal, env, {"name": name},
                                   caller.meta)


def move_environment(caller, env, place, other_id):
    """Move ``env`` just ``place`` ("before" or "after") the environment ``other_id``."""
    return apps.move_environment(caller.services, caller.principal, env, {place: other_id},
                                 caller.meta)


def delete_environment(caller, env):
    apps.delete_environment(caller.services, caller.principal, env, caller.meta)


def environment(caller, app_id, env_id):
    """(app, environment) the URL names, with the API's access checks."""
    app_row, env = apps.environment_in_scope(caller.services, caller.principal, env_id)
    if app_row["id"] != app_id:
        raise DoesNotExist("Environment not found")
    apps.check_environment_access(caller.services, caller.principal, env)
    return app_row, env


def fresh_environment(caller, env):
    """The environment row as stored now (its ``version`` moves with every write)."""
    return apps.environment_in_scope(caller.services, caller.principal, env["id"])[1]


# -- secrets ---------------------------------------------------------------------------------


def list_secrets(caller, env, path=None):
    return secrets.list_secrets(caller.services, caller.principal, env, path=path)


def get_secret(caller, env, secret_id):
    for secret in list_secrets(caller, env):
        if secret.id == secret_id:
            return secret
    raise DoesNotExist(f"Secret not found: {secret_id}")


def reveal(caller, env, secret_ids):
    """{secret id: REST object} (references resolved, the caller's override attached) of the
    named live secrets; recorded as one read, as an API read is."""
    wanted = set(secret_ids)
    chosen = [secret for secret in list_secrets(caller, env) if secret.id in wanted]
    rendered = secrets.render_secrets(caller.services, caller.principal, env, chosen)
    audit.record_read(caller.services.read_log, caller.principal, env,
                      audit.read_details(secret.id for secret in chosen), caller.meta)
    return {item["id"]: item for item in rendered}


@contextmanager
def as_of(page_version):
    """The API's ``If-Match`` rule for a write from a page: the environment must still be at
    the version the page showed (``page_version``; a page that sent none is refused too),
    checked in the write's transaction; a refusal says so as a page would (CHANGED_SINCE)."""
    if page_version is None:
        raise PreconditionFailed(CHANGED_SINCE)
    try:
        yield page_version
    except PreconditionFailed:
        raise PreconditionFailed(CHANGED_SINCE) from None


def create_secrets(caller, env, entries, page_version=None):
    """Create secrets; with ``page_version``, only if the environment is still at it (a form
    that adds a value beside others it showed)."""
    if page_version is None:
        return secrets.create_secrets(caller.services, caller.principal, env, entries,
                                      caller.meta)
    with as_of(page_version):
        return secrets.create_secrets(caller.services, caller.principal, env, entries,
                                      caller.meta, expected_version=page_version)


def unresolved_references(caller, env, value, key, path):
    """The references of a value about to be saved that would not resolve for the caller."""
    return secrets.unresolved_references(caller.services, caller.principal, env, value, key,
                                         path)


def create_across(caller, entries):
    """Create one secret in each of several environments (``[(environment, NewSecret)]``),
    all of them or none: one transaction, each environment's own write and audit event."""
    with caller.services.db.transaction():
        return [secrets.create_secrets(caller.services, caller.principal, env, [entry],
                                       caller.meta)[0] for env, entry in entries]


def update_secrets(caller, env, changes, page_version):
    with as_of(page_version):
        return secrets.update_secrets(caller.services, caller.principal, env, changes,
                                      caller.meta, expected_version=page_version)


def delete_secrets(caller, env, secret_ids, page_version):
    with as_of(page_version):
        return secrets.delete_secrets(caller.services, caller.principal, env, secret_ids,
                                      caller.meta, expected_version=page_version)


def secret_versions(caller, env, secret_id):
    """The versions of a secret of the environment (live or deleted), oldest first."""
    return list(reversed(history.secret_history(caller.services, caller.principal, env,
                                                secret_id, caller.meta)))


def deleted_secrets(caller, env):
    """The environment's deleted secrets (``history.DeletedSecret``), most recent first."""
    return history.deleted_secrets(caller.services, caller.principal, env, caller.meta)


def restore_secret(caller, env, secret_id, version, page_version):
    """Make ``version`` current again, as a new version (a deleted secret is undeleted), if
    the environment is still at ``page_version``."""
    with as_of(page_version):
        return history.restore_secret(caller.services, caller.principal, env, secret_id,
                                      version, caller.meta, expected_version=page_version)


def restore_deleted(caller, env, secret_id, page_version):
    """Undelete a deleted secret with the content it had before its deletion."""
    if secret_store.secrets_by_id(caller.services.db, env["id"], [secret_id]):
        raise DoesNotExist("This secret is not deleted.")
    last = next((version for version in reversed(secret_versions(caller, env, secret_id))
                 if version.event != "deleted"), None)
    if last is None:
        raise DoesNotExist(f"Secret not found: {secret_id}")
    return restore_secret(caller, env, secret_id, last.version, page_version)


ANONYMOUS_ACTORS = {"anonymous": "anyone with the link", "server": "the server",
                    "visitor": "someone signing in"}


def actor_name(names, event):
    if event["actor_type"] in ("operator", "cli"):
        return f"{event['actor_id'] or 'operator'} (phase-lite command)"
    if event["actor_type"] in ANONYMOUS_ACTORS:
        return ANONYMOUS_ACTORS[event["actor_type"]]
    return names.get(event["actor_type"], {}).get(event["actor_id"]) or event["actor_id"]


# -- service accounts ------------------------------------------------------------------------


def service_accounts(caller):
    _require(caller, "ServiceAccounts", "read", "service accounts")
    return sa_domain.list_service_accounts(caller.services, caller.principal)


def _service_account(caller, sa_id):
    _require(caller, "ServiceAccounts", "read", "service accounts")
    return sa_domain.get_service_account(caller.services, caller.principal, sa_id)


def service_account(caller, sa_id):
    sa = _service_account(caller, sa_id)
    tokens, granted = sa_domain.service_account_detail(caller.services, caller.principal, sa)
    return sa, tokens, granted


def create_service_account(caller, name, role_id):
    return sa_domain.create_service_account(
        caller.services, caller.principal, {"name": name, "role_id": role_id}, caller.meta)


def change_service_account_role(caller, sa_id, role_id):
    sa_domain.update_service_account(caller.services, caller.principal,
                                     _service_account(caller, sa_id), {"role_id": role_id},
                                     caller.meta)


def delete_service_account(caller, sa_id):
    sa_domain.delete_service_account(caller.services, caller.principal,
                                     _service_account(caller, sa_id), caller.meta)


def set_service_account_access(caller, sa_id, env_ids):
    """Grant exactly ``env_ids`` (environments of any apps the caller holds)."""
    sa = _service_account(caller, sa_id)
    by_app = {}
    for env in granted_environment_choices(caller):
        if env["id"] in env_ids:
            by_app.setdefault(env["app_id"], []).append(env["id"])
    fields = {"apps": [{"id": app_id, "environments": ids} for app_id, ids in by_app.items()]}
    sa_domain.set_service_account_access(caller.services, caller.principal, sa, fields,
                                         caller.meta)


def granted_environment_choices(caller):
    """Every environment the caller may grant, with its app's name, apps newest first."""
    rows = []
    for app_row in apps.visible_apps(caller.services, caller.principal):
        for env in apps.visible_environments(caller.services, caller.principal, app_row):
            rows.append({"id": env["id"], "name": env["name"], "app_id": app_row["id"],
                         "app_name": app_row["name"]})
    return rows


def issue_service_token(caller, sa_id, name, expires_in=None):
    fields = {"name": name}
    if expires_in:
        fields["expires_in"] = expires_in
    return tokens.issue_service_account_token(
        caller.services, caller.principal, _service_account(caller, sa_id), fields, caller.meta)


def revoke_service_token(caller, sa_id, token_id):
    tokens.revoke_service_account_token(caller.services, caller.principal,
                                        _service_account(caller, sa_id), token_id,
                                        caller.meta)


def roles(caller):
    return accounts.list_roles(caller.services, caller.principal)


# -- members ---------------------------------------------------------------------------------


def members(caller):
    """The organisation's users with their invitation state and environment grants."""
    db, org_id = caller.services.db, caller.principal.organisation_id
    users = accounts.list_users(caller.services, caller.principal)
    pending = {row["user_id"] for row in console_store.pending_invitations(db, org_id, now())}
    grants = console_store.user_grants(db, org_id)
    # Of other members' grants, only those in environments the caller sees (as the API
    # shows a service account's)
    visible = apps.visible_environment_ids(caller.services, caller.principal)
    if visible is not None:
        grants = {user_id: [grant for grant in held if grant[2] in visible]
                  for user_id, held in grants.items()}
    waiting = console_store.users_without_password(db, org_id)
    return [dict(user, invited=user["id"] in pending, waiting=user["id"] in waiting,
                 grants=grants.get(user["id"], []))
            for user in users]


def assignable_roles(caller):
    return accounts.assignable_roles(caller.services, caller.principal)


def invite_member(caller, email, role_id, env_ids=()):
    """Add a user with a role (and the environments ``env_ids`` among those the caller may
    grant) and return a one-time link token to choose a password; all in one transaction."""
    accounts.check_assignable_role(caller.services, caller.principal, role_id)
    db = caller.services.db
    with db.transaction():
        user = accounts.create_user(caller.services, caller.principal,
                                    {"email": email, "role_id": role_id}, caller.meta)
        if env_ids:
            set_member_access(caller, user["id"], set(env_ids))
        token = sessions.issue_link(db, "invite", user["id"])
        audit.record(db, caller.principal, caller.meta, "invite", "user", user["id"])
    return token


def renew_invitation(caller, user_id):
    """A new one-time link for a member who has not chosen a password yet (the earlier link
    stops working); the invitation is audited again."""
    _require(caller, "Members", "create", "members")
    user = member(caller, user_id)
    db = caller.services.db
    waiting = console_store.users_without_password(db, caller.principal.organisation_id)
    if user["id"] not in waiting:
        raise PreconditionFailed("This member has chosen a password already.")
    with db.transaction():
        token = sessions.issue_link(db, "invite", user["id"])
        audit.record(db, caller.principal, caller.meta, "invite", "user", user["id"])
    return token


def member(caller, user_id):
    return accounts.get_user(caller.services, caller.principal, user_id)


def change_member_role(caller, user_id, role_id):
    accounts.change_user_role(caller.services, caller.principal, member(caller, user_id),
                              {"role_id": role_id}, caller.meta)


def set_member_access(caller, user_id, env_ids):
    """Grant exactly ``env_ids`` among the environments the caller may grant, app by app,
    in one transaction."""
    user = member(caller, user_id)
    grantee = Grantee.of_user(user)
    current = _granted_ids(caller, user)
    db = caller.services.db
    with db.transaction():
        for app_id, envs in _by_app(granted_environment_choices(caller)).items():
            app_row = apps.app_in_scope(caller.services, caller.principal, app_id)
            wanted = [env for env in envs if env["id"] in env_ids and env["id"] not in current]
            gone = [env for env in envs if env["id"] not in env_ids and env["id"] in current]
            if wanted:
                accounts.grant_environments(caller.services, caller.principal, grantee,
                                            app_row, wanted, caller.meta)
            if gone:
                accounts.revoke_environments(caller.services, caller.principal, grantee,
                                             app_row, gone, caller.meta)


def _granted_ids(caller, user):
    return account_store.granted_environment_ids(caller.services.db, user_id=user["id"])


def _by_app(envs):
    grouped = {}
    for env in envs:
        grouped.setdefault(env["app_id"], []).append(env)
    return grouped


def remove_member(caller, user_id):
    """Remove a user: tokens revoked, grants dropped, every session ended."""
    accounts.delete_user(caller.services, caller.principal, member(caller, user_id),
                         caller.meta)


# -- personal access tokens ------------------------------------------------------------------


def personal_tokens(caller):
    return account_store.list_tokens(caller.services.db, user_id=caller.principal.account_id)


def issue_personal_token(caller, name, expires_in=None):
    fields = {"name": name}
    if expires_in:
        fields["expires_in"] = expires_in
    me = member(caller, caller.principal.account_id)
    return tokens.issue_user_token(caller.services, caller.principal, me, fields, caller.meta)


def authorise_cli(caller, cli, expires_in=None):
    """Mint the personal token a ``phase auth`` link asks for, encrypted to the CLI's key."""
    me = member(caller, caller.principal.account_id)
    return webauth.authorise(caller.services, caller.principal, me, cli, caller.meta,
                             expires_in)


def revoke_personal_token(caller, token_id):
    if token_id not in {row["id"] for row in personal_tokens(caller)}:
        raise DoesNotExist("Token not found.")
    tokens.revoke_token(caller.services, caller.principal, token_id, caller.meta)


# -- Lockbox ---------------------------------------------------------------------------------


def create_share(caller, new_share):
    return lockbox.create_share(caller.services, caller.principal, new_share, caller.meta)


def shares(caller):
    return lockbox.shares_of(caller.services, caller.principal)


def revoke_share(caller, share_id):
    lockbox.revoke_share(caller.services, caller.principal, share_id, caller.meta)


def share_exists(services, link_id):
    """Whether a link still opens (the share page, before offering "Reveal")."""
    return lockbox.share_exists(services, link_id)


def open_share(services, link_id, meta):
    """A visitor's view of a share (no session: the link is the capability)."""
    return lockbox.open_share(services, link_id, meta)


# -- audit log -------------------------------------------------------------------------------


AUDIT_PAGE = 50
AUDIT_PAGES = (2 ** 63 - 1) // AUDIT_PAGE - 1  # the last page whose offset a query holds


def audit_events(caller, filters, page):
    """(events with names, has_more) of the organisation, newest first, filtered."""
    _require(caller, "Logs", "read", "logs")
    services, principal = caller.services, caller.principal
    db = services.db
    # What the caller sees elsewhere (the API's rules): its environments and their apps,
    # and the service accounts it may know by name.
    visible_envs = apps.visible_environment_ids(services, principal)
    visible_apps = None
    if visible_envs is not None:
        visible_apps = {row["id"] for row in apps.visible_apps(services, principal)}
    visible_accounts = sa_domain.visible_service_account_ids(services, principal)
    rows = console_store.search_events(
        db, principal.organisation_id, visible_environment_ids=visible_envs,
        visible_app_ids=visible_apps, visible_service_account_ids=visible_accounts,
        limit=AUDIT_PAGE + 1, offset=page * AUDIT_PAGE, **filters)
    names = console_store.audit_names(db, principal.organisation_id)
    for kind, visible in (("environment", visible_envs), ("app", visible_apps),
                          ("service", visible_accounts)):
        if visible is not None:
            names[kind] = {key: name for key, name in names[kind].items() if key in visible}
    more, rows = len(rows) > AUDIT_PAGE, rows[:AUDIT_PAGE]
    names["secret"] = _secret_key_names(caller, rows)
    return rows, more, names


def _secret_key_names(caller, events):
    """{secret id: key name} for the events' secrets in environments the caller may read."""
    if not caller.principal.may("Secrets", "read", app_level=True):
        return {}
    db, vault = caller.services.db, caller.services.vault
    wanted = {}  # environment id: secret ids
    for event in events:
        ids = audit.secret_ids(event["details"])
        if ids and event["environment_id"] and event["app_id"]:
            wanted.setdefault((event["app_id"], event["environment_id"]), set()).update(ids)
    names = {}
    for (app_id, env_id), ids in wanted.items():
        if not caller.services.auth.can_access_environment(caller.principal, env_id):
            continue
        rows = console_store.latest_versions(db, ids)
        if rows:
            data_key = vault.data_key(app_id)
            for secret_id, row in rows.items():
                names[secret_id] = vault.decrypt(data_key, "secret_versions", row["id"], "key",
                                                 row["key_enc"])
    return names


def audit_event_names(caller):
    return console_store.event_actions(caller.services.db, caller.principal.organisation_id)


# -- bulk edit and import --------------------------------------------------------------------


CHANGED_SINCE = ("This environment changed since you opened this page; nothing was saved. "
                 "Reload it to see the current secrets, then make your changes again.")


@dataclass(frozen=True)
class Plan:
    """What applying ``KEY=value`` pairs to a folder would do (key names only, no values)."""
    created: list
    updated: list
    unchanged: list
    deleted: list

    @property
    def empty(self):
        return not (self.created or self.updated or self.deleted)


def plan_changes(current, pairs, *, delete_missing):
    """The Plan of ``pairs`` over ``current`` (the folder's secrets); sealed secrets are never
    touched."""
    by_key = {secret.key: secret for secret in current}
    created, updated, unchanged = [], [], []
    for key, value in pairs:
        secret = by_key.get(key)
        if secret is None:
            created.append(key)
        elif secret.type == "sealed" or secret.value == value:
            unchanged.append(key)
        else:
            updated.append(key)
    wanted = {key for key, _ in pairs}
    deleted = [secret.key for secret in current
               if delete_missing and secret.key not in wanted and in_bulk_edit(secret)]
    return Plan(created, updated, unchanged, deleted)


def in_bulk_edit(secret):
    """Whether a bulk edit lists the secret (and so deletes it when its line is removed):
    sealed secrets, and keys a .env line cannot hold, are left as they are."""
    return secret.type != "sealed" and dotenv.writable(secret.key)


def apply_pairs(caller, env, path, pairs, expected_version, *, delete_missing):
    """Apply ``KEY=value`` pairs to a folder in one transaction (creates, updates and, for a
    bulk edit, deletes), refused with PreconditionFailed(CHANGED_SINCE) when the environment's
    version is no longer ``expected_version`` (``If-Match``). Return the Plan applied."""
    for method in ("POST", "PUT", "DELETE") if delete_missing else ("POST", "PUT"):
        secrets.require_permission(caller.principal, env, method)
    db = caller.services.db
    with db.transaction():
        env = fresh_environment(caller, env)
        if expected_version is None:  # every page sends the version it showed
            raise PreconditionFailed(CHANGED_SINCE)
        try:  # the If-Match rule of the API's writes, said for a page
            conditional.require_version(env["version"], expected_version)
        except PreconditionFailed:
            raise PreconditionFailed(CHANGED_SINCE) from None
        current = [secret for secret in secrets.list_secrets(caller.services, caller.principal, env)
                   if secret.path == path]
        plan = plan_changes(current, pairs, delete_missing=delete_missing)
        values, by_key = dict(pairs), {secret.key: secret for secret in current}
        if plan.created:
            secrets.create_secrets(caller.services, caller.principal, env, [
                secrets.NewSecret(key=key, value=values[key], path=path)
                for key in plan.created], caller.meta)
            env = fresh_environment(caller, env)
        if plan.updated:
            secrets.update_secrets(caller.services, caller.principal, env, [
                secrets.SecretChange(id=by_key[key].id, value=values[key])
                for key in plan.updated], caller.meta)
            env = fresh_environment(caller, env)
        if plan.deleted:
            secrets.delete_secrets(caller.services, caller.principal, env,
                                   [by_key[key].id for key in plan.deleted], caller.meta)
    return plan
