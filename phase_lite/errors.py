"""Domain errors with Phase's messages, and the table that gives each its HTTP status.

The domain layer raises these with the exact ``error`` text Phase sends; only the HTTP layer
(``api``) turns them into responses, using ``STATUS``. Messages never contain secret values,
keys or tokens.
"""


class PhaseError(Exception):
    """Base of the errors a client sees as ``{"error": message}``."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidRequest(PhaseError):
    """The request body or parameters break a rule."""


class AuthenticationFailed(PhaseError):
    """No, a malformed, an unknown or an expired credential, or an account/scope refusal that
    Phase reports as an authentication failure."""


class PermissionDenied(PhaseError):
    """The caller is known but may not do this."""


class Mirrored(PermissionDenied):
    """A write to an app that is a mirror of another Phase host (``phase-lite mirror``): 403,
    as Phase refuses what no other request could make possible (its "SSE is not enabled")."""

    def __init__(self, host: str):
        super().__init__(f"this app is mirrored from {host}; change it there")


class DoesNotExist(PhaseError):
    """The named object does not exist in the caller's organisation."""


class Duplicate(PhaseError):
    """The write would create a second object where one is allowed."""


class PreconditionFailed(PhaseError):
    """An ``If-Match`` condition does not hold: the environment changed since (extension)."""


class UnsupportedMediaType(PhaseError):
    """A body of a type the route does not read (Django REST framework's text)."""

    def __init__(self, media_type: str):
        super().__init__(f'Unsupported media type "{media_type}" in request.')


class Throttled(PhaseError):
    """The account made more requests than the configured rate allows."""

    def __init__(self, wait_seconds: int):
        unit = "second" if wait_seconds == 1 else "seconds"  # DRF's ngettext
        super().__init__(f"Request was throttled. Expected available in {wait_seconds} {unit}.")
        self.wait_seconds = wait_seconds


STATUS = {
    InvalidRequest: 400,
    AuthenticationFailed: 401,
    PermissionDenied: 403,
    DoesNotExist: 404,
    Duplicate: 409,
    PreconditionFailed: 412,
    UnsupportedMediaType: 415,
    Throttled: 429,
}

INTERNAL_ERROR = "Internal server error."


def status_of(error: PhaseError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
