"""The audit log: who did what, from where, to which objects. Never a secret value.

Writes are recorded with ``record`` inside the transaction that makes the change, so a change
and its audit event commit or roll back together. Reads are recorded as one event per request.
"""

import getpass
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .store import StoreError, format_time, now
from .store import audit as audit_store
from .vault import DecryptionFailed

log = logging.getLogger("phase_lite.audit")
RETENTION_INTERVAL = 86400.0  # seconds between automatic prunes while serving


CHANNELS = ("api", "cli", "console")  # the doors a change came through


@dataclass(frozen=True)
class RequestMeta:
    """Where a request came from: the channel (``CHANNELS``), the client IP after proxy rules
    and the User-Agent."""
    ip_address: str | None = None
    user_agent: str = "Unknown"
    channel: str | None = "api"  # None: the server's own work (no door)


CLI_META = RequestMeta(ip_address=None, user_agent="phase-lite-cli", channel="cli")


def operator_name() -> str:
    """The login of the person running the admin command, as audit events name them."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name for this uid (a bare container)
        return "unknown"


def actor(principal) -> tuple[str, str]:
    """(actor type, actor id) of a caller as events name it: ``user``, ``service`` or
    ``operator`` (``principal`` None: the local operator, by login)."""
    if principal is None:
        return "operator", operator_name()
    return principal.kind, principal.account_id


def event(principal, action, resource_type, *, resource_id=None, app_id=None,
          environment_id=None, details=None, meta: RequestMeta | None = None) -> dict:
    """Build an audit event row. ``principal`` None means the local operator (the admin
    command before an organisation exists, or a key rotation, restore or prune)."""
    meta = meta or CLI_META
    actor_type, actor_id = actor(principal)
    return {
        "created_at": now(),
        "organisation_id": principal.organisation_id if principal else None,
        "actor_type": actor_type,
        "actor_id": actor_id,
        "token_id": principal.token_id if principal else None,
        "channel": meta.channel,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "app_id": app_id,
        "environment_id": environment_id,
        "details": details or {},
        "ip_address": meta.ip_address,
        "user_agent": meta.user_agent,
    }


def record(db, principal, meta, action, resource_type, resource_id=None, **fields):
    """Write one audit event now (call inside the write transaction it describes)."""
    audit_store.insert_events(db, [event(principal, action, resource_type,
                                         resource_id=resource_id, meta=meta, **fields)])


def prune(db, older_than_days: int, *, record_prune=True) -> int:
    """Delete events older than ``older_than_days`` days; return how many were deleted.

    The prune itself is recorded (unless ``record_prune`` is false), so the log shows it.
    """
    cutoff = format_time(datetime.now(timezone.utc) - timedelta(days=older_than_days))
    with db.transaction(bookkeeping=True):  # no cached answer holds audit events
        if not db.take_turn("audit retention"):
            return 0  # another node is pruning now
        deleted = audit_store.delete_events_before(db, cutoff)
        if record_prune:
            record(db, None, CLI_META, "prune", "audit_log",
                   details={"olderThanDays": older_than_days, "deleted": deleted})
    return deleted


def apply_retention(db, days: int) -> int:
    """One run of the server's retention (``serve.every`` repeats it): delete events older
    than ``days`` without recording the prune itself."""
    deleted = prune(db, days, record_prune=False)
    log.info("audit retention: deleted %d events older than %d days", deleted, days)
    return deleted


def record_secret_write(db, principal, action, env_row, secrets, meta=None):
    """Record one write request on secrets (call inside its transaction).

    ``secrets`` is [(secret id, version after the write)]; names and values never appear.
    """
    audit_store.insert_events(db, [event(
        principal, f"secrets.{action}", "secret", app_id=env_row["app_id"],
        environment_id=env_row["id"],
        details={"secrets": [{"id": secret_id, "version": version}
                             for secret_id, version in secrets]},
        meta=meta,
    )])


def secret_ids(details) -> list:
    """The ids of the secrets an event's details name (``"secrets"``: ids, or objects with an
    ``id`` and a ``version``); the one reading of that field every audit reader shares."""
    listed = details.get("secrets") if isinstance(details, dict) else None
    if not isinstance(listed, list):
        return []
    return [item["id"] if isinstance(item, dict) else item for item in listed]


def read_details(secret_ids) -> dict:
    """The details of a read event naming the secrets it returned.

    Reads repeat: a cached answer keeps its details and records the same object for every
    request it serves, so it is encoded once per batch, not once per request.
    """
    return {"secrets": list(secret_ids)}


def record_read(read_log, principal, env_row, details, meta=None):
    """Record one read request (``details`` from ``read_details``) in the ``ReadLog``: one
    event, written soon."""
    read_log.add(event(
        principal, "secrets.read", "secret", app_id=env_row["app_id"],
        environment_id=env_row["id"], details=details, meta=meta,
    ))


class ReadLog:
    """Read events waiting to be written, committed in small batches by a background thread.

    A read is not an acknowledged write, so it need not cost a synchronous commit of its own:
    events are written within ``interval`` seconds (sooner when ``batch`` are waiting), each
    with the time of its request; when ``backlog`` are waiting, the reader adding one writes
    them. ``flush`` writes what is waiting now; ``close`` stops.
    """

    # A batch is a commit (a bookkeeping one: the read caches stay), and each costs a sync:
    # batches are kept few and large.
    def __init__(self, db, interval=0.5, batch=1024, backlog=4096):
        self.db = db
        self.interval = interval
        self.batch = batch
        self.backlog = backlog  # past this many waiting, a reader writes them itself
        self._events = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = None

    def add(self, item):
        with self._lock:
            self._events.append(item)
            waiting = len(self._events)
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="audit-reads",
                                                daemon=True)
                self._thread.start()
        if waiting == self.batch:  # once per batch: waking the writer takes a lock
            self._wake.set()
        elif waiting >= self.backlog:
            # The writer is behind (a read can be answered faster than it is written):
            # this request writes a batch first, so memory stays bounded.
            try:
                self._write(self.take(self.batch))
            except StoreError as exc:
                log.error("writing read audit events failed (will retry): %s", exc)

    def __len__(self):
        """How many events are waiting to be written."""
        return len(self._events)

    def take(self, limit=None) -> list:
        """Remove and return the oldest ``limit`` waiting events (all by default)."""
        with self._lock:
            if limit is None or limit >= len(self._events):
                taken, self._events = self._events, []
            else:
                taken, self._events = self._events[:limit], self._events[limit:]
        return taken

    def flush(self):
        """Write every waiting event, ``batch`` to a transaction."""
        while True:
            taken = self.take(self.batch)
            if not taken:
                return
            self._write(taken)

    def _write(self, taken):
        if not taken:
            return
        try:
            with self.db.transaction(bookkeeping=True):
                audit_store.insert_read_events(self.db, taken)
        except StoreError:
            with self._lock:  # keep them for the next attempt
                self._events[:0] = taken
            raise

    def _run(self):
        while not self._stopped:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
            except StoreError as exc:
                log.error("writing read audit events failed (will retry): %s", exc)

    def close(self):
        """Stop the thread and write what is waiting."""
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()



def _referenced_ids(event):
    """(ids of accounts, apps, environments and tokens, ids of secrets) an event names."""
    ids = {event[key] for key in ("actorId", "tokenId", "resourceId", "appId", "environmentId")
           if event[key]}
    secrets = set(secret_ids(event["details"]))
    details = event["details"] if isinstance(event["details"], dict) else {}
    for key, value in details.items():
        if key == "secrets":
            continue
        if isinstance(value, str):
            ids.add(value)
        elif isinstance(value, list):
            ids |= {v for v in value if isinstance(v, str)}
    if event["resourceType"] == "secret" and event["resourceId"]:
        secrets.add(event["resourceId"])
    return ids, {s for s in secrets if isinstance(s, str)}


def names_in_events(db, vault, events):
    """Per event (audit list payloads), {id: name} for what it refers to: account emails and
    names, app, environment and token names, and secret key names decrypted with each app's
    data key. For the local operator only: key names are encrypted at rest for a reason."""
    referenced = [_referenced_ids(event) for event in events]
    ids = set().union(*(r[0] for r in referenced))
    secret_ids = set().union(*(r[1] for r in referenced))
    names = audit_store.names_of(db, ids) if ids else {}
    data_keys = {}
    for secret_id, app_id, key_enc in (audit_store.secret_key_ciphertexts(db, secret_ids)
                                       if secret_ids else ()):
        try:
            if app_id not in data_keys:
                data_keys[app_id] = vault.data_key(app_id)
            names[secret_id] = vault.decrypt(data_keys[app_id], "secrets", secret_id, "key",
                                             key_enc)
        except DecryptionFailed:
            continue  # named by id alone; the failure is the read path's to report
    return [{i: names[i] for i in sorted(own | secrets) if i in names}
            for own, secrets in referenced]
