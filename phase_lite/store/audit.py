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


def list_events(db, *, app_id=None, environment_id=None, actor_id=None, since=None, limit=100):
    clauses, params = [], []
    for column, value in (("app_id", app_id), ("environment_id", environment_id),
                          ("actor_id", actor_id)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if since:
        clauses.append("created_at >= ?")
        params.append(since)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return db.all(
        f"SELECT * FROM audit_events {where} ORDER BY created_at DESC, id DESC LIMIT ?",
        (*params, limit),
    )


def delete_events_before(db, cutoff):
    return db.execute("DELETE FROM audit_events WHERE created_at < ?", (cutoff,)).rowcount
