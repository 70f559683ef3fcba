"""The audit log: who did what, from where, to which objects. Never a secret value.

Writes are recorded with ``record`` inside the transaction that makes the change, so a change
and its audit event commit or roll back together. Reads are recorded as one event per request.
"""

from dataclasses import dataclass

from .store import audit as audit_store
from .store import now


@dataclass(frozen=True)
class RequestMeta:
    """Where a request came from (client IP after proxy rules, User-Agent)."""
    ip_address: str | None = None
    user_agent: str = "Unknown"


CLI_META = RequestMeta(ip_address=None, user_agent="phase-lite-cli")


def event(principal, action, resource_type, *, resource_id=None, app_id=None,
          environment_id=None, details=None, meta: RequestMeta | None = None) -> dict:
    """Build an audit event row. ``principal`` None means the local admin command."""
    meta = meta or CLI_META
    return {
        "created_at": now(),
        "organisation_id": principal.organisation_id if principal else None,
        "actor_type": principal.kind if principal else "cli",
        "actor_id": principal.account_id if principal else None,
        "token_id": principal.token_id if principal else None,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "app_id": app_id,
        "environment_id": environment_id,
        "details": details or {},
        "ip_address": meta.ip_address,
        "user_agent": meta.user_agent,
    }


def record(db, principal, action, resource_type, **fields):
    """Write one audit event now (call inside the write transaction it describes)."""
    audit_store.insert_events(db, [event(principal, action, resource_type, **fields)])
