"""Apps and environments: who may see them, and every change to them, audited.

Interface (no Flask here; the API, the admin command and the console call the same functions)
------------------------------------------------------------------------------------------------
Every function takes ``services`` (``app.Services``) and the caller (``auth.Principal``: a
token's user or service account, or ``auth.local_operator`` for the admin command); writes also
take the request's fields as Phase names them (a dict) and ``meta`` (``audit.RequestMeta``,
whose ``channel`` says which door the change came through). Each write checks the caller's
permission, validates everything first with Phase's texts, then makes the change and records its
audit event in one transaction, so a refused request leaves the data exactly as it was. Rows are
store rows; the callers render them.

Visibility follows phase_lite's access model: an Owner or Admin user (and the local operator)
sees every app and environment; any other account sees an app when it holds at least one of its
environments, and an environment when it holds it (Phase's app membership and EnvironmentKey
rows).
"""

import shlex

from . import audit, contract
from .errors import DoesNotExist, Duplicate, InvalidRequest, Mirrored, PermissionDenied
from .store import NotFound, missing_as, new_id
from .store import accounts as account_store
from .store import apps as app_store
from .store import mirrors as mirror_store
from .textfields import validate_text_field as clean_text

DEFAULT_ENVIRONMENTS = (("Development", "dev"), ("Staging", "staging"), ("Production", "prod"))


# -- rules every resource shares -------------------------------------------------------------


def require(principal, resource, action, noun, *, app_level=False):
    """Refuse unless the caller's role grants ``action`` on ``resource`` (Phase's wording)."""
    if not principal.may(resource, action, app_level=app_level):
        raise PermissionDenied(f"You don't have permission to {action} {noun}.")


def refuse_if_mirrored(db, app_id):
    """Refuse any change to a mirrored app but its sync's: the source is the only truth, and
    a local change would be silently undone by the next sync."""
    mirror = mirror_store.mirror_of_app(db, app_id)
    if mirror is not None:
        raise Mirrored(mirror["host"])


def creator_grant(principal) -> dict:
    """Grant arguments for objects the caller creates (who sees everything needs none)."""
    if principal.sees_everything:
        return {}
    return principal.account_filter()


# -- scope named by a URL or a command -------------------------------------------------------


def app_in_scope(services, principal, app_id):
    """The app an id names, checked as Phase's authentication class checks it."""
    with missing_as(DoesNotExist(f"App with ID {app_id} not found")):
        app = app_store.get_app(services.db, principal.organisation_id, app_id)
    services.auth.check_app_access(principal, app)
    return app


def app_by_id_or_name(services, principal, id_or_name):
    """The app an id or (when exactly one app has it) a name gives: the admin command's way."""
    try:
        return app_in_scope(services, principal, id_or_name)
    except DoesNotExist:
        matches = app_store.find_apps_by_name(services.db, principal.organisation_id, id_or_name)
        if len(matches) > 1:
            raise InvalidRequest(
                f"{len(matches)} apps are named {id_or_name}: use the id.") from None
        if not matches:
            raise DoesNotExist(f"No app with the name or id '{id_or_name}' "
                               "('phase-lite apps list' shows them).") from None
        services.auth.check_app_access(principal, matches[0])
        return matches[0]


def environment_in_scope(services, principal, env_id):
    """The environment an id names and its app (access to the app is checked here, access
    to the environment by ``check_environment_access``)."""
    with missing_as(DoesNotExist("Environment not found")):
        env = app_store.get_environment(services.db, principal.organisation_id, env_id)
    app = app_store.get_app(services.db, principal.organisation_id, env["app_id"])
    services.auth.check_app_access(principal, app)
    return app, env


# The Phase CLI's short forms of the default environments (``--env dev``): their types.
SHORT_FORMS = tuple(env_type for _, env_type in DEFAULT_ENVIRONMENTS)


def environments_by_name(services, principal, app, names):
    """The app's environments by name (case-insensitive), short form or id, in the order
    given; every environment the caller holds when ``names`` is empty (the admin command's
    way, as ``environment_by_name`` finds each)."""
    if not names:
        return visible_environments(services, principal, app)
    envs = []
    for name in names:
        env = environment_by_name(services.db, app, name)
        check_environment_access(services, principal, env)
        envs.append(env)
    return envs


def environment_by_name(db, app, name):
    """The app's environment named ``name`` (case-insensitive); else, for the Phase CLI's
    short forms ``dev``, ``staging`` and ``prod``, the app's one environment of that type
    (renamed or not); else the one with that id."""
    env = app_store.find_environment(db, app["id"], name)
    if env is None and name.lower() in SHORT_FORMS:
        typed = [e for e in app_store.list_environments(db, app["id"])
                 if e["env_type"] == name.lower()]
        env = typed[0] if len(typed) == 1 else None
    if env is None:
        try:
            env = app_store.get_environment(db, app["organisation_id"], name)
        except NotFound:
            env = None
        if env is not None and env["app_id"] != app["id"]:
            env = None
    if env is None:
        raise DoesNotExist(
            f"No environment '{name}' in app {app['name']}: give its name, its id or one of "
            f"{', '.join(SHORT_FORMS)} ('phase-lite envs list {shlex.quote(app['name'])}' shows "
            "them).")
    return env


# -- apps ------------------------------------------------------------------------------------


def visible_environment_ids(services, principal) -> set | None:
    """The ids of the environments the caller may see (those it holds), or None for every
    one (an Owner or Admin): the one rule for what a caller sees of apps, environments and
    other accounts' grants, wherever they are listed (API, console)."""
    if principal.sees_everything:
        return None
    return services.auth.accessible_environment_ids(principal)


def visible_apps(services, principal):
    """The organisation's apps the caller may see, newest first."""
    rows = app_store.list_apps(services.db, principal.organisation_id)
    granted = visible_environment_ids(services, principal)
    if granted is None:
        return rows
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
        validate_environment_name(name)
    return names


def validate_environment_name(name):
    if not isinstance(name, str) or not contract.ENV_NAME_PATTERN.match(name):
        raise InvalidRequest(contract.ENV_NAME_INVALID)


def create_app(services, principal, fields, meta):
    """Create an app with its own data key and environments; return (app row, env rows).

    ``fields``: ``name``, optional ``description``, optional ``environments`` (names; absent
    gives Development, Staging and Production). A creator who does not see everything is
    granted every new environment.
    """
    require(principal, "Apps", "create", "apps")
    name = clean_text(fields.get("name"), "name", contract.NAME_MAX)
    description = fields.get("description")
    if description is not None:
        description = clean_text(description, "description", contract.DESCRIPTION_MAX,
                                 required=False)
    env_names = environment_names(fields.get("environments"))
    if env_names is None:
        environments = DEFAULT_ENVIRONMENTS
    else:
        environments = [(env_name, "custom") for env_name in env_names]
    db, vault = services.db, services.vault
    app_id = new_id()
    wrapped = vault.new_wrapped_data_key(app_id)
    with db.transaction():
        check_app_name_free(db, principal.organisation_id, name)
        app_store.insert_app(db, app_id, principal.organisation_id, name, description or "",
                             wrapped)
        data_key = vault.data_key(app_id)
        for index, (env_name, env_type) in enumerate(environments):
            env_id = insert_environment(db, vault, data_key, app_id, env_name, env_type, index)
            _grant_creator(db, principal, env_id)
        audit.record(db, principal, meta, "create", "app", app_id, app_id=app_id,
                     details={"name": name})
    app = app_store.get_app(db, principal.organisation_id, app_id)
    return app, app_store.list_environments(db, app_id)


def update_app(services, principal, app, fields, meta):
    """Rename an app or change its description; return the updated row."""
    require(principal, "Apps", "update", "apps")
    raw_name, raw_description = fields.get("name"), fields.get("description")
    if raw_name is None and raw_description is None:
        raise InvalidRequest("At least one of 'name' or 'description' must be provided.")
    name = description = None
    if raw_name is not None:
        name = clean_text(raw_name, "name", contract.NAME_MAX)
    if raw_description is not None:
        description = clean_text(raw_description, "description", contract.DESCRIPTION_MAX,
                                 required=False) or ""
    db = services.db
    with db.transaction():
        refuse_if_mirrored(db, app["id"])
        if name is not None:
            check_app_name_free(db, principal.organisation_id, name, app["id"])
        app_store.update_app(db, app["id"], name, description)
        changed = [field for field, value in (("name", name), ("description", description))
                   if value is not None]
        audit.record(db, principal, meta, "update", "app", app["id"], app_id=app["id"],
                     details={"fields": changed})
    return app_store.get_app(db, principal.organisation_id, app["id"])


def check_app_name_free(db, org_id, name, app_id=None):
    """Refuse a name another app of the organisation has, in any case (beyond Phase, which
    allows it and so makes ``${APP::ENV.KEY}`` references ambiguous)."""
    taken = [row for row in app_store.find_apps_by_name(db, org_id, name) if row["id"] != app_id]
    if taken:
        raise Duplicate(f"An app named '{taken[0]['name']}' already exists.")


def delete_app(services, principal, app, meta):
    """Delete an app with its environments, secrets and grants."""
    require(principal, "Apps", "delete", "apps")
    db = services.db
    with db.transaction():
        refuse_if_mirrored(db, app["id"])
        audit.record(db, principal, meta, "delete", "app", app["id"], app_id=app["id"],
                     details={"name": app["name"]})
        app_store.delete_app(db, app["id"])


# -- environments ----------------------------------------------------------------------------


def visible_environments(services, principal, app):
    """The app's environments the caller holds, in index order."""
    rows = app_store.list_environments(services.db, app["id"])
    granted = visible_environment_ids(services, principal)
    if granted is None:
        return rows
    return [row for row in rows if row["id"] in granted]


def check_environment_access(services, principal, env):
    """Phase's environment detail check (the texts differ from the secrets API's)."""
    if services.auth.can_access_environment(principal, env["id"]):
        return
    if principal.is_user:
        raise PermissionDenied("You don't have access to this environment.")
    raise PermissionDenied("Service account doesn't have access to this environment.")


def create_environment(services, principal, app, fields, meta):
    """Add a custom environment (``fields["name"]``) at the end of the app's list; return
    its row."""
    require(principal, "Environments", "create", "environments", app_level=True)
    name = fields.get("name")
    if not name:
        raise InvalidRequest("Missing required field: name")
    validate_environment_name(name)
    db, vault = services.db, services.vault
    with db.transaction():
        refuse_if_mirrored(db, app["id"])
        if app_store.find_environment(db, app["id"], name) is not None:
            raise InvalidRequest(f"An environment named '{name}' already exists in this app.")
        data_key = vault.data_key(app["id"])
        index = app_store.next_sort_index(db, app["id"])
        env_id = insert_environment(db, vault, data_key, app["id"], name, "custom", index)
        _grant_creator(db, principal, env_id)
        audit.record(db, principal, meta, "create", "environment", env_id, app_id=app["id"],
                     environment_id=env_id, details={"name": name})
    return app_store.get_environment(db, principal.organisation_id, env_id)


def rename_environment(services, principal, env, fields, meta):
    """Rename an environment to ``fields["name"]`` (a name another environment of the app has
    is a conflict); return the updated row."""
    require(principal, "Environments", "update", "environments", app_level=True)
    name = fields.get("name")
    if not name:
        raise InvalidRequest("Missing required field: name")
    validate_environment_name(name)
    db = services.db
    with db.transaction():
        refuse_if_mirrored(db, env["app_id"])
        other = app_store.find_environment(db, env["app_id"], name)
        if other is not None and other["id"] != env["id"]:
            raise Duplicate(f"An environment named '{name}' already exists in this app.")
        app_store.rename_environment(db, env["id"], name)
        audit.record(db, principal, meta, "update", "environment", env["id"], app_id=env["app_id"],
                     environment_id=env["id"], details={"from": env["name"], "to": name})
    return app_store.get_environment(db, principal.organisation_id, env["id"])


def move_environment(services, principal, env, fields, meta):
    """Move an environment just before or just after another of its app (``fields``:
    ``before`` or ``after``, the other environment's id). The app's environments are then
    numbered 0, 1, ... in the new order, which the API's ``index``, the clients and the console
    follow. Return the app's environments in their new order."""
    require(principal, "Environments", "update", "environments", app_level=True)
    place = [name for name in ("before", "after") if fields.get(name) is not None]
    if len(place) != 1:
        raise InvalidRequest("Give exactly one of 'before' or 'after'.")
    place, other_id = place[0], fields[place[0]]
    db = services.db
    with db.transaction():
        refuse_if_mirrored(db, env["app_id"])
        rows = app_store.list_environments(db, env["app_id"])
        other = next((row for row in rows if row["id"] == other_id), None)
        if other is None:
            raise DoesNotExist("Environment not found")
        check_environment_access(services, principal, other)
        if other["id"] == env["id"]:
            raise InvalidRequest("An environment cannot move before or after itself.")
        order = [row["id"] for row in rows if row["id"] != env["id"]]
        order.insert(order.index(other["id"]) + (place == "after"), env["id"])
        old_position = [row["id"] for row in rows].index(env["id"])
        app_store.set_environment_order(db, env["app_id"], order)
        audit.record(db, principal, meta, "move", "environment", env["id"], app_id=env["app_id"],
                     environment_id=env["id"],
                     details={"name": env["name"], place: other["name"],
                              "from": old_position, "to": order.index(env["id"])})
    return app_store.list_environments(db, env["app_id"])


def delete_environment(services, principal, env, meta):
    """Delete an environment with its secrets and grants."""
    require(principal, "Environments", "delete", "environments", app_level=True)
    db = services.db
    with db.transaction():
        refuse_if_mirrored(db, env["app_id"])
        audit.record(db, principal, meta, "delete", "environment", env["id"], app_id=env["app_id"],
                     environment_id=env["id"], details={"name": env["name"]})
        app_store.delete_environment(db, env["id"])


def insert_environment(db, vault, data_key, app_id, name, env_type, index):
    """Insert an environment with new key material (in the caller's transaction); return
    its id. Checks nothing: the write functions above and a mirror's sync do that."""
    env_id = new_id()
    seed_enc, salt_enc, public_key = vault.seal_environment(data_key, env_id)
    app_store.insert_environment(
        db, env_id, app_id, name, env_type, index, seed_enc, salt_enc, public_key
    )
    return env_id


def _grant_creator(db, principal, env_id):
    grant = creator_grant(principal)
    if grant:
        account_store.grant_environment(db, env_id, **grant)
