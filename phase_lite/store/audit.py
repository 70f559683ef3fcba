"""Audit events."""

import json


def insert_events(db, events):
    """Insert audit events (dicts with the audit_events columns; details as a dict)."""
    db.executemany(
        "INSERT INTO audit_events (created_at, organisation_id, actor_type, actor_id, token_id,"
        " action, resource_type, resource_id, app_id, environment_id, details, ip_address,"
        " user_agent) VALUES (:created_at, :organisation_id, :actor_type, :actor_id, :token_id,"
        " :action, :resource_type, :resource_id, :app_id, :environment_id, :details,"
        " :ip_address, :user_agent)",
        [dict(event, details=json.dumps(event.get("details") or {}, separators=(",", ":")))
         for event in events],
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
