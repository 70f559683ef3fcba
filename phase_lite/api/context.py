"""Per-request helpers shared by the blueprints: services, caller, scope, arguments, origin."""

import ipaddress
import re

from flask import current_app, request

from ..audit import RequestMeta
from ..ratelimit import account_key

_CAMEL_BOUNDARY = re.compile(r"([a-z0-9])([A-Z])")


def services():
    return current_app.extensions["phase_lite"]


def principal():
    """Authenticate the request (cached on the request) or raise AuthenticationFailed."""
    found = request.environ.get("phase_lite.principal")
    if found is None:
        found = services().auth.authenticate(request.headers.get("Authorization"))
        request.environ["phase_lite.principal"] = found
    return found


def scope(caller):
    """Resolve the app/environment the request names, then count it against the rate limit.

    Phase's order: authentication and scope (401/403/404) come before throttling (429),
    which comes before the view's own checks.
    """
    found = services().auth.resolve_scope(caller, query_args(), request.headers)
    throttle(caller)
    return found


def throttle(caller=None):
    """Count the request against its account's rate limit (the client IP's without one).

    Counts once per request however often it is called; raise Throttled when over the limit.
    """
    if request.environ.get("phase_lite.throttled"):
        return
    request.environ["phase_lite.throttled"] = True
    key = account_key(caller) if caller is not None else account_key(ip=client_ip())
    current_app.extensions["phase_lite_limiter"].check(key)


def snake_case(name: str) -> str:
    """Query-parameter names as Phase's CamelCaseMiddleWare sees them (appId, APP_ID -> app_id)."""
    return _CAMEL_BOUNDARY.sub(r"\1_\2", name).lower()


def query_args() -> dict:
    """Query parameters with names normalised to snake_case; the last value wins (Django's)."""
    return {snake_case(name): value for name, value in request.args.items(multi=True)}


def client_ip() -> str | None:
    """The client address: X-Real-IP, then the first X-Forwarded-For, then the peer.

    Forwarding headers are believed only when the peer is a trusted proxy
    (PHASE_LITE_TRUSTED_PROXIES); invalid values are skipped.
    """
    peer = request.remote_addr
    if _is_trusted_proxy(peer):
        candidates = [request.headers.get("X-Real-IP", "")]
        candidates.append(request.headers.get("X-Forwarded-For", "").split(",")[0])
        for candidate in candidates:
            candidate = candidate.strip()
            if _valid_ip(candidate):
                return candidate
    return peer if _valid_ip(peer or "") else None


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted_proxy(peer) -> bool:
    proxies = services().config.trusted_proxies
    if not proxies or not peer or not _valid_ip(peer):
        return False
    address = ipaddress.ip_address(peer)
    for entry in proxies:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def request_meta() -> RequestMeta:
    return RequestMeta(ip_address=client_ip(),
                       user_agent=request.headers.get("User-Agent") or "Unknown")
