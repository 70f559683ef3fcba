"""Apps and environments: creation with fresh key material, rename, delete.

One domain layer for the ``phase-lite`` admin command and the management API.
"""

import re

from .errors import Duplicate, InvalidRequest
from .store import new_id
from .store import accounts as account_store
from .store import apps as app_store

DEFAULT_ENVIRONMENTS = (("Development", "dev"), ("Staging", "staging"), ("Production", "prod"))
ENV_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9\-_]{1,64}$")
ENV_NAME_INVALID = (
    "Environment name is invalid. Only letters, numbers, hyphens and underscores are allowed "
    "(max 64 characters)."
)


def create_app(db, vault, org_id, name, description="", env_names=None, *,
               grant_user_id=None, grant_service_account_id=None):
    """Create an app with its own data key and environments; return the app id.

    ``env_names`` None gives Development, Staging and Production; a list gives custom
    environments in that order. The creating account (when it has no global access) is granted
    every new environment.
    """
    app_id = new_id()
    if env_names is None:
        environments = DEFAULT_ENVIRONMENTS
    else:
        environments = [(env_name, "custom") for env_name in env_names]
    wrapped = vault.new_wrapped_data_key(app_id)
    with db.transaction():
        check_app_name_free(db, org_id, name)
        app_store.insert_app(db, app_id, org_id, name, description, wrapped)
        data_key = vault.data_key(app_id)
        for index, (env_name, env_type) in enumerate(environments):
            env_id = _insert_environment(db, vault, data_key, app_id, env_name, env_type, index)
            if grant_user_id or grant_service_account_id:
                account_store.grant_environment(
                    db, env_id, user_id=grant_user_id, service_account_id=grant_service_account_id
                )
    return app_id


def check_app_name_free(db, org_id, name, app_id=None):
    """Refuse a name another app of the organisation has, in any case (beyond Phase, which
    allows it and so makes ``${APP::ENV.KEY}`` references ambiguous)."""
    taken = [row for row in app_store.find_apps_by_name(db, org_id, name) if row["id"] != app_id]
    if taken:
        raise Duplicate(f"An app named '{taken[0]['name']}' already exists.")


def update_app(db, org_id, app_id, name=None, description=None):
    """Rename an app (to a name no other app has) and/or change its description."""
    with db.transaction():
        if name is not None:
            check_app_name_free(db, org_id, name, app_id)
        app_store.update_app(db, app_id, name, description)


def _insert_environment(db, vault, data_key, app_id, name, env_type, index):
    env_id = new_id()
    seed_enc, salt_enc, public_key = vault.seal_environment(data_key, env_id)
    app_store.insert_environment(
        db, env_id, app_id, name, env_type, index, seed_enc, salt_enc, public_key
    )
    return env_id


def validate_environment_name(name):
    if not isinstance(name, str) or not ENV_NAME_PATTERN.match(name):
        raise InvalidRequest(ENV_NAME_INVALID)


def create_environment(db, vault, app_id, name, *, grant_user_id=None,
                       grant_service_account_id=None):
    """Add a custom environment at the end of the app's list; return its id."""
    validate_environment_name(name)
    with db.transaction():
        if app_store.find_environment(db, app_id, name) is not None:
            raise InvalidRequest(f"An environment named '{name}' already exists in this app.")
        data_key = vault.data_key(app_id)
        index = app_store.next_sort_index(db, app_id)
        env_id = _insert_environment(db, vault, data_key, app_id, name, "custom", index)
        if grant_user_id or grant_service_account_id:
            account_store.grant_environment(
                db, env_id, user_id=grant_user_id, service_account_id=grant_service_account_id
            )
    return env_id


def rename_environment(db, env_row, name):
    validate_environment_name(name)
    with db.transaction():
        other = app_store.find_environment(db, env_row["app_id"], name)
        if other is not None and other["id"] != env_row["id"]:
            raise Duplicate(f"An environment named '{name}' already exists in this app.")
        app_store.rename_environment(db, env_row["id"], name)


def delete_environment(db, env_row):
    with db.transaction():
        app_store.delete_environment(db, env_row["id"])


def delete_app(db, app_id):
    with db.transaction():
        app_store.delete_app(db, app_id)
