"""Audit events."""

import hashlib

import orjson


_COLUMNS = ("created_at", "organisation_id", "actor_type", "actor_id", "token_id", "action",
            "resource_type", "resource_id", "app_id", "environment_id", "details", "ip_address",
            "user_agent", "channel")
_STORED = (*_COLUMNS, "read_set_id")

# Events as they are read: a read event's details come from its read set (m010).
EVENTS = ("(SELECT e.id, e.created_at, e.organisation_id, e.actor_type, e.actor_id, e.token_id,"
          " e.action, e.resource_type, e.resource_id, e.app_id, e.environment_id,"
          " COALESCE(r.details, e.details) AS details, e.ip_address, e.user_agent, e.channel"
          " FROM audit_events e LEFT JOIN audit_read_sets r ON r.id = e.read_set_id) events")


def insert_events(db, events):
    """Insert audit events (dicts with the audit_events columns; details as a dict).

    Events that share one details object share its JSON text.
    """
    texts = _Texts()
    db.insert_rows("audit_events", _STORED,
                   [_row(event, texts.of(event.get("details") or {}), None) for event in events])


def insert_read_events(db, events):
    """Insert read events (as ``insert_events``), their details stored once per distinct
    content in ``audit_read_sets`` (m010): an upsert per distinct details object, a row of
    ids per event."""
    texts = _Texts()
    digests = {}  # id(details): read set id (texts keeps each details object alive)
    sets = {}  # read set id: [JSON text, time of its newest event]
    rows = []
    for event in events:
        details = event.get("details") or {}
        set_id = digests.get(id(details))
        if set_id is None:
            text = texts.of(details)
            set_id = digests[id(details)] = hashlib.sha256(text.encode()).hexdigest()
            sets.setdefault(set_id, [text, event["created_at"]])
        used = sets[set_id]
        if event["created_at"] > used[1]:
            used[1] = event["created_at"]
        rows.append(_row(event, "{}", set_id))
    # In id order: two nodes writing the same sets lock their rows in the same order.
    db.executemany(
        "INSERT INTO audit_read_sets (id, details, last_used_at) VALUES (?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET last_used_at = excluded.last_used_at"
        " WHERE excluded.last_used_at > audit_read_sets.last_used_at",
        [(set_id, text, used) for set_id, (text, used) in sorted(sets.items())])
    db.insert_rows("audit_events", _STORED, rows)


class _Texts:
    """The JSON text of each details object, encoded once per object."""

    def __init__(self):
        self.text = {}  # id(details): (details, JSON text)

    def of(self, details) -> str:
        found = self.text.get(id(details))
        if found is None:
            found = self.text[id(details)] = (details, orjson.dumps(details).decode())
        return found[1]


def _row(event, details_text, read_set_id):
    return (event["created_at"], event["organisation_id"], event["actor_type"],
            event["actor_id"], event["token_id"], event["action"], event["resource_type"],
            event["resource_id"], event["app_id"], event["environment_id"], details_text,
            event["ip_address"], event["user_agent"], event.get("channel"), read_set_id)


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
        f"SELECT * FROM {EVENTS} {where} ORDER BY created_at DESC, id DESC LIMIT ?",
        (*params, limit),
    )


def delete_events_before(db, cutoff):
    """Delete the events before ``cutoff`` and the read sets no later event names; return
    how many events were deleted."""
    deleted = db.execute("DELETE FROM audit_events WHERE created_at < ?", (cutoff,)).rowcount
    db.execute("DELETE FROM audit_read_sets WHERE last_used_at < ?", (cutoff,))
    return deleted


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
