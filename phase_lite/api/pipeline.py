"""The steps of each kind of request, declared once: the Flask view runs them, and so does the
fast path (``PrefixMiddleware``) that answers a successful secrets GET before Flask.

Phase's order, for every request on an environment's secrets: the Accept header (406, public
API only), authentication (401), the environment the request names and access to it (404, 401
service account, 403 user), the rate limit (429), then the role's permission for the method
(403) and the request's own arguments (400). Each step raises the ``errors.PhaseError`` (or
werkzeug exception) Phase answers with; each runs once per request, however often asked (see
``context``), so a request the fast path could not finish is run again by Flask from the start
with the same outcome and is counted against the rate limit once.
"""

from werkzeug.exceptions import NotAcceptable

from .. import secrets
from .. import request_context as context


def accepts_json(accept: str | None) -> bool:
    """Whether an Accept header admits JSON, matched as Phase's framework does (parameters
    and q values ignored)."""
    if accept is None:
        return True
    for media_range in accept.split(","):
        main, _, sub = media_range.split(";")[0].strip().partition("/")
        if main in ("application", "*") and sub in ("json", "*"):
            return True
    return False


def accept(environ):
    if not accepts_json(environ.get("HTTP_ACCEPT")):
        raise NotAcceptable(description="Could not satisfy the request Accept header.")


def environment_request(environ, method, *, check_accept):
    """Accept, authenticate, scope, throttle, permission: return (caller, environment row)."""
    if check_accept:
        accept(environ)
    caller = context.principal(environ)
    env_row = context.find_scope(environ, caller).environment
    context.throttle(environ, caller)
    # The domain functions check the permission again whoever calls them; here it comes in
    # Phase's order (403 before a body's 400) and refuses the methods they lack (PATCH...).
    secrets.require_permission(caller, env_row, method)
    return caller, env_row


def secrets_request(environ, method):
    """``/v1/secrets/`` (Phase's public API)."""
    return environment_request(environ, method, check_accept=True)


def client_secrets_request(environ, method):
    """``/service/secrets/`` (the Phase CLI and SDKs: no Accept check, as on Phase)."""
    return environment_request(environ, method, check_accept=False)
