"""The console's reads and member changes: audit search with names, members and their grants."""

import orjson

from .audit import EVENTS, event_filters


# -- members ---------------------------------------------------------------------------------


def pending_invitations(db, organisation_id, stamp):
    return db.all(
        "SELECT l.id, l.user_id, l.expires_at FROM console_links l"
        " JOIN users u ON u.id = l.user_id WHERE l.kind = 'invite' AND l.used_at IS NULL"
        " AND l.expires_at > ? AND u.organisation_id = ? AND u.deleted_at IS NULL",
        (stamp, organisation_id),
    )


def users_without_password(db, organisation_id):
    """The ids of the organisation's live users who never chose a console password."""
    return {row[0] for row in db.all(
        "SELECT u.id FROM users u WHERE u.organisation_id = ? AND u.deleted_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM user_passwords p WHERE p.user_id = u.id)",
        (organisation_id,))}


def user_grants(db, organisation_id):
    """{user id: [(app name, environment name, environment id)]} in app and index order."""
    grants = {}
    for row in db.all(
        "SELECT ea.user_id, a.name AS app_name, e.name AS env_name, e.id AS env_id"
        " FROM environment_access ea JOIN environments e ON e.id = ea.environment_id"
        " JOIN apps a ON a.id = e.app_id WHERE ea.user_id IS NOT NULL"
        " AND a.organisation_id = ? ORDER BY a.name, e.sort_index",
        (organisation_id,),
    ):
        grants.setdefault(row["user_id"], []).append(
            (row["app_name"], row["env_name"], row["env_id"]))
    return grants


# -- audit -----------------------------------------------------------------------------------


def search_events(db, organisation_id, *, app_id=None, environment_id=None, actor_id=None,
                  action=None, since=None, until=None, visible_environment_ids=None,
                  visible_app_ids=None, visible_service_account_ids=None, limit=50, offset=0):
    """Events of the organisation, newest first. Each ``visible_*`` set (None: no limit)
    limits the events of an environment, of an app, or about a service account or one of
    its tokens to those."""
    clauses, params = event_filters(app_id=app_id, environment_id=environment_id,
                                    actor_id=actor_id, action=action, since=since, until=until)
    clauses.insert(0, "(organisation_id = ? OR organisation_id IS NULL)")
    params.insert(0, organisation_id)
    for column, ids in (("environment_id", visible_environment_ids),
                        ("app_id", visible_app_ids)):
        if ids is not None:
            clauses.append(f"({column} IS NULL OR {column} IN ({_marks(ids)}))")
            params.extend(sorted(ids))
    if visible_service_account_ids is not None:
        ids, marks = sorted(visible_service_account_ids), _marks(visible_service_account_ids)
        clauses.append(
            "(resource_type NOT IN ('service_account', 'service_account_token')"
            f" OR (resource_type = 'service_account' AND resource_id IN ({marks}))"
            " OR (resource_type = 'service_account_token' AND resource_id IN"
            f" (SELECT id FROM tokens WHERE service_account_id IN ({marks}))))")
        params.extend(ids + ids)
    return [dict(row, details=orjson.loads(row["details"])) for row in db.all(
        f"SELECT * FROM {EVENTS} WHERE {' AND '.join(clauses)}"
        " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )]


def _marks(ids) -> str:
    return ", ".join("?" * len(ids)) or "NULL"


def event_actions(db, organisation_id):
    return [row[0] for row in db.all(
        "SELECT DISTINCT action FROM audit_events WHERE organisation_id = ? ORDER BY action",
        (organisation_id,))]


def audit_names(db, organisation_id):
    """{"user": {id: email}, "service": {id: name}, "app": {...}, "environment": {...}}, removed
    accounts included (the log outlives them)."""
    def mapping(sql):
        return {row[0]: row[1] for row in db.all(sql, (organisation_id,))}

    return {
        "user": mapping("SELECT id, email FROM users WHERE organisation_id = ?"),
        "service": mapping("SELECT id, name FROM service_accounts WHERE organisation_id = ?"),
        "app": mapping("SELECT id, name FROM apps WHERE organisation_id = ?"),
        "environment": mapping(
            "SELECT e.id, e.name FROM environments e JOIN apps a ON a.id = e.app_id"
            " WHERE a.organisation_id = ?"),
    }


def latest_versions(db, secret_ids):
    """{secret id: its newest ``secret_versions`` row} (deleted secrets keep theirs)."""
    found = {}
    ids = list(secret_ids)
    for start in range(0, len(ids), 500):
        part = ids[start:start + 500]
        for row in db.all(
            "SELECT v.* FROM secret_versions v WHERE v.secret_id IN"
            f" ({', '.join('?' * len(part))}) ORDER BY v.version",
            part,
        ):
            found[row["secret_id"]] = row
    return found
