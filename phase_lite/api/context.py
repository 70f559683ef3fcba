"""Per-request helpers shared by the blueprints: services, caller, scope, arguments, origin."""

import functools
import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType

from flask import current_app, request

from ..audit import RequestMeta
from ..ratelimit import account_key

_CAMEL_BOUNDARY = re.compile(r"([a-z0-9])([A-Z])")


# Every request goes through these helpers several times: each looks the request up once
# (a context-local lookup) and keeps what it works out in the WSGI environ. Given an
# ``environ`` that ``bind`` prepared, they also work outside Flask's request context.
_SERVICES = "phase_lite.services"
_LIMITER = "phase_lite.limiter"
_GENERATION = "phase_lite.generation"
_PRINCIPAL = "phase_lite.principal"
_THROTTLED = "phase_lite.throttled"


def bind(environ, app):
    """Prepare ``environ`` for the helpers, outside Flask's request context."""
    environ[_SERVICES] = app.extensions["phase_lite"]
    environ[_LIMITER] = app.extensions["phase_lite_limiter"]


def services(environ=None):
    environ = request.environ if environ is None else environ
    found = environ.get(_SERVICES)
    if found is None:
        found = environ[_SERVICES] = current_app.extensions["phase_lite"]
    return found


def generation(environ=None) -> int:
    """The database generation this request reads at (``Database.generation()``), taken once
    per request before anything is read."""
    environ = request.environ if environ is None else environ
    found = environ.get(_GENERATION)
    if found is None:
        found = environ[_GENERATION] = services(environ).db.generation()
    return found


def principal(environ=None):
    """Authenticate the request (cached on the request) or raise AuthenticationFailed."""
    environ = request.environ if environ is None else environ
    found = environ.get(_PRINCIPAL)
    if found is None:
        found = services(environ).auth.authenticate(environ.get("HTTP_AUTHORIZATION"),
                                                    generation(environ))
        environ[_PRINCIPAL] = found
    return found


def scope(caller):
    """Resolve the app/environment the request names, then count it against the rate limit.

    Phase's order: authentication and scope (401/403/404) come before throttling (429),
    which comes before the view's own checks.
    """
    found = find_scope(caller)
    throttle(caller)
    return found


def find_scope(caller, environ=None):
    """The app/environment the request names (``Authenticator.resolve_scope``)."""
    environ = request.environ if environ is None else environ
    return services(environ).auth.resolve_scope(
        caller, query_args(environ), scope_headers(environ), generation(environ))


def throttle(caller=None, environ=None):
    """Count the request against its account's rate limit (the client IP's without one).

    Counts once per request however often it is called; raise Throttled when over the limit
    (a refused request is not counted, so asking again refuses it again).
    """
    environ = request.environ if environ is None else environ
    if environ.get(_THROTTLED):
        return
    key = account_key(caller) if caller is not None else account_key(ip=client_ip(environ))
    limiter = environ.get(_LIMITER)
    if limiter is None:
        limiter = environ[_LIMITER] = current_app.extensions["phase_lite_limiter"]
    limiter.check(key)
    environ[_THROTTLED] = True


@functools.lru_cache(maxsize=1024)
def snake_case(name: str) -> str:
    """Query-parameter names as Phase's CamelCaseMiddleWare sees them (appId, APP_ID -> app_id)."""
    return _CAMEL_BOUNDARY.sub(r"\1_\2", name).lower()


def query_args(environ=None) -> Mapping[str, str]:
    """Query parameters with names normalised to snake_case; the last value wins (Django's).

    Clients repeat the same few query strings, so the parsed form of recent ones is kept
    (read-only).
    """
    environ = request.environ if environ is None else environ
    query = environ.get("QUERY_STRING", "")
    found = _PARSED_QUERIES.get(query)
    if found is None:
        found = MappingProxyType({snake_case(name): value
                                  for name, value in request.args.items(multi=True)})
        if len(query) <= PARSED_QUERY_MAX_LENGTH:
            if len(_PARSED_QUERIES) >= PARSED_QUERIES_KEPT:
                _PARSED_QUERIES.clear()
            _PARSED_QUERIES[query] = found
    return found


def known_query_args(environ) -> Mapping[str, str] | None:
    """``query_args`` of a query string parsed before (by Flask), else None."""
    return _PARSED_QUERIES.get(environ.get("QUERY_STRING", ""))


PARSED_QUERIES_KEPT = 512
PARSED_QUERY_MAX_LENGTH = 2048
_PARSED_QUERIES: dict[str, Mapping[str, str]] = {}


def scope_headers(environ=None) -> dict:
    """The request headers that name a scope, for ``Authenticator.resolve_scope``."""
    environ = request.environ if environ is None else environ
    return {"Secret-Id": environ.get("HTTP_SECRET_ID"),
            "Environment": environ.get("HTTP_ENVIRONMENT")}


def client_ip(environ=None) -> str | None:
    """The client address: X-Real-IP, then the first X-Forwarded-For, then the peer.

    Forwarding headers are believed only when the peer is a trusted proxy
    (PHASE_LITE_TRUSTED_PROXIES); invalid values are skipped.
    """
    environ = request.environ if environ is None else environ
    peer = environ.get("REMOTE_ADDR")
    proxies = services(environ).config.trusted_proxies
    if proxies and _is_trusted_proxy(peer, proxies):
        candidates = [environ.get("HTTP_X_REAL_IP", "")]
        candidates.append(environ.get("HTTP_X_FORWARDED_FOR", "").split(",")[0])
        for candidate in candidates:
            candidate = candidate.strip()
            if _valid_ip(candidate):
                return candidate
    return peer if _valid_peer(peer or "") else None


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# The socket's peer address repeats from request to request: its checks are kept for a few
# recent addresses (forwarded values, which the client writes, are checked every time).
_valid_peer = functools.lru_cache(maxsize=256)(_valid_ip)


@functools.lru_cache(maxsize=256)
def _is_trusted_proxy(peer, proxies: tuple) -> bool:
    if not peer or not _valid_peer(peer):
        return False
    address = ipaddress.ip_address(peer)
    for entry in proxies:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def request_meta(environ=None) -> RequestMeta:
    environ = request.environ if environ is None else environ
    return RequestMeta(ip_address=client_ip(environ),
                       user_agent=environ.get("HTTP_USER_AGENT") or "Unknown")
