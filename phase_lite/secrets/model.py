"""What callers pass to the secrets rules and get back, the constants of Phase's
secrets view, and its permission check."""

from dataclasses import dataclass, field

from ..errors import PermissionDenied
from ..paths import ROOT
from ..store import render_time


ACTIONS = {"GET": "read", "POST": "create", "PUT": "update", "DELETE": "delete"}
ENVIRONMENT_REQUIRED = (
    "Environment context required. Supply `app_id` and `env` as query parameters."
)
DUPLICATE = "Duplicate secret found"
SEALED = "Sealed secrets cannot be unsealed. Delete and recreate the secret instead."


# -- what callers pass and get back ----------------------------------------------------------


@dataclass(frozen=True)
class Wire:
    """``ph:v1`` ciphertexts a Phase client sent for a secret's fields (None: not sent)."""
    key: str | None = None
    value: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class Override:
    """A personal override to set (kept for personal access tokens only)."""
    value: str = field(repr=False)
    is_active: bool = True
    wire_value: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NewSecret:
    """One secret to create. ``tags`` are names as sent (cleaned and checked as Phase does)."""
    key: str = field(repr=False)
    value: str = field(repr=False)
    comment: str = field(default="", repr=False)
    path: str = ROOT
    tags: tuple | None = None
    type: str = "secret"
    override: Override | None = None
    key_digest: str | None = None
    wire: Wire | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SecretChange:
    """A partial update of the secret ``id``; None leaves a field as it is (``tags=()``
    clears the tags)."""
    id: str
    key: str | None = field(default=None, repr=False)
    value: str | None = field(default=None, repr=False)
    comment: str | None = field(default=None, repr=False)
    path: str | None = None
    tags: tuple | None = None
    type: str | None = None
    override: Override | None = None
    key_digest: str | None = None
    wire: Wire | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret as stored, decrypted (value not reference-resolved)."""
    id: str
    key: str = field(repr=False)
    value: str = field(repr=False)
    comment: str = field(repr=False)
    tags: tuple
    type: str
    path: str
    key_digest: str
    version: int
    created_at: str
    updated_at: str
    environment_id: str
    folder_id: str | None
    deleted_at: str | None = None
    order: tuple = (0, 0)  # (updated_at, rowid): Phase's observed listing order

    @property
    def identity(self):
        """What reference resolution calls this secret (Phase: environment, path, digest)."""
        return (self.environment_id, self.path, self.key_digest)


@dataclass(frozen=True, slots=True)
class PersonalOverride:
    """The caller's own override of a secret, decrypted."""
    id: str
    value: str = field(repr=False)
    is_active: bool
    created_at: str
    updated_at: str


# -- permissions -----------------------------------------------------------------------------


def require_permission(principal, env_row, method: str) -> str:
    """Apply Phase's secrets-view checks after authentication and scope; return the action.

    Every read and write of secrets makes this check itself, whichever door called it; a
    request's pipeline makes it early too, to answer in Phase's order. ``principal`` None is
    the local operator (an Owner: a bulk import, the tests' seeding)."""
    action = ACTIONS.get(method)
    if action is None:
        raise PermissionDenied(f"Unsupported HTTP method: {method}")
    if env_row is None:
        raise PermissionDenied(ENVIRONMENT_REQUIRED)
    if principal is not None and not principal.may("Secrets", action, app_level=True):
        raise PermissionDenied(
            f"You don't have permission to {action} secrets in this environment."
        )
    return action


def secret_body(secret: Secret) -> dict:
    """The REST object of a secret, fields in Phase's order (raw value, no override)."""
    return {
        "id": secret.id,
        "key": secret.key,
        "value": secret.value,
        "comment": secret.comment,
        "tags": list(secret.tags),
        "override": None,
        "type": secret.type,
        "lifecycle": "static",
        "path": secret.path,
        "keyDigest": secret.key_digest,
        "version": secret.version,
        "createdAt": render_time(secret.created_at),
        "updatedAt": render_time(secret.updated_at),
        "environment": secret.environment_id,
        "folder": secret.folder_id,
    }
