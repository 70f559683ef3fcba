"""Audit events."""

import orjson


_COLUMNS = ("created_at", "organisation_id", "actor_type", "actor_id", "token_id", "action",
            "resource_type", "resource_id", "app_id", "environment_id", "details", "ip_address",
            "user_agent", "channel")


def insert_events(db, events):
    """Insert audit events (dicts with the audit_events columns; details as a dict).

    Events that share one details object (repeated reads) share its JSON text.
    """
    texts = {}  # id(details): (details, JSON text)

    def details_text(details):
        found = texts.get(id(details))
        if found is None:
            found = texts[id(details)] = (details, orjson.dumps(details).decode())
        return found[1]

    db.executemany(
        f"INSERT INTO audit_events ({', '.join(_COLUMNS)})"
        f" VALUES ({', '.join('?' * len(_COLUMNS))})",
        ((event["created_at"], event["organisation_id"], event["actor_type"],
          event["actor_id"], event["token_id"], event["action"], event["resource_type"],
          event["resource_id"], event["app_id"], event["environment_id"],
          details_text(event.get("details") or {}), event["ip_address"],
          event["user_agent"], event.get("channel")) for event in events),
    )


def event_filters(*, app_id=None, environment_id=None, actor_id=None, action=None, since=None,
                  until=None):
    """(WHERE clauses, parameters) selecting audit events: each given value must match, and
    ``since`` and ``until`` bound ``created_at`` (from, inclusive; to, exclusive)."""
    clauses, params = [], []
    for column, value in (("app_id", app_id), ("environment_id", environment_id),
                          ("actor_id", actor_id), ("action", action)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    for clause, value in (("created_at >= ?", since), ("created_at < ?", until)):
        if value:
            clauses.append(clause)
            params.append(value)
    return clauses, params


def list_events(db, *, app_id=None, environment_id=None, actor_id=None, since=None, limit=100):
    clauses, params = event_filters(app_id=app_id, environment_id=environment_id,
                                    actor_id=actor_id, since=since)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return db.all(
        f"SELECT * FROM audit_events {where} ORDER BY created_at DESC, id DESC LIMIT ?",
        (*params, limit),
    )


def delete_events_before(db, cutoff):
    return db.execute("DELETE FROM audit_events WHERE created_at < ?", (cutoff,)).rowcount


def names_of(db, ids):
    """{id: name} for the users (email), service accounts, apps, environments and tokens among
    ``ids``, deleted accounts included (their rows stay so the log keeps naming them)."""
    names = {}
    for chunk, marks in _chunks(ids):
        names.update((row[0], row[1]) for row in db.all(
            " UNION ALL ".join(f"SELECT id, {column} FROM {table} WHERE id IN ({marks})"
                               for table, column in _NAMED),
            chunk * len(_NAMED)))
    return names


_NAMED = (("users", "email"), ("service_accounts", "name"), ("apps", "name"),
          ("environments", "name"), ("tokens", "name"))


def secret_key_ciphertexts(db, ids):
    """(secret id, app id, encrypted key name) of the secrets among ``ids``, deleted too."""
    return [row for chunk, marks in _chunks(ids) for row in db.all(
        "SELECT s.id, e.app_id, s.key_enc FROM secrets s"
        f" JOIN environments e ON e.id = s.environment_id WHERE s.id IN ({marks})", chunk)]


def _chunks(ids, size=500):
    """(ids, placeholders) in chunks small enough for any backend's parameter limit."""
    ordered = sorted(ids)
    for start in range(0, len(ordered), size):
        chunk = ordered[start:start + size]
        yield chunk, ", ".join("?" * len(chunk))
