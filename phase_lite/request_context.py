"""What a request carries on its WSGI environ: the app's services, the caller, the scope it
names, its arguments, its client address and rate-limit count.

Shared by every HTTP surface (the API's blueprints and fast path, the console, the access log);
nothing here knows Flask.
"""

import functools
import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" decoding error handler)

from .audit import RequestMeta
from .ratelimit import account_key

_CAMEL_BOUNDARY = re.compile(r"([a-z0-9])([A-Z])")


# Every helper takes the request's WSGI environ (``request.environ`` in a view) and keeps what
# it works out there, so the steps of a request run the same inside Flask and on the fast path
# (``pipeline``) and each is done once per request however often it is asked for.
SERVICES = "phase_lite.services"    # the app's Services (``bind``)
PRINCIPAL = "phase_lite.principal"  # the authenticated caller, once known (``principal``)
_GENERATION = "phase_lite.generation"
_THROTTLED = "phase_lite.throttled"


def bind(environ, services_):
    """Attach the app's services to a request (``PrefixMiddleware`` does, for every request)."""
    environ[SERVICES] = services_


def services(environ):
    return environ[SERVICES]


def set_principal(environ, caller):
    """Note who the request is when it was authenticated another way (the console's session):
    the access log names its account."""
    environ[PRINCIPAL] = caller


def generation(environ) -> int:
    """The database generation this request reads at (``db.generation()``), taken once
    per request before anything is read."""
    found = environ.get(_GENERATION)
    if found is None:
        found = environ[_GENERATION] = services(environ).db.generation()
    return found


def principal(environ):
    """Authenticate the request (cached on the request) or raise AuthenticationFailed."""
    found = environ.get(PRINCIPAL)
    if found is None:
        found = services(environ).auth.authenticate(environ.get("HTTP_AUTHORIZATION"),
                                                    generation(environ))
        environ[PRINCIPAL] = found
    return found


def find_scope(environ, caller):
    """The app/environment the request names (``Authenticator.resolve_scope``)."""
    return services(environ).auth.resolve_scope(
        caller, query_args(environ), scope_headers(environ), generation(environ))


def throttle(environ, caller=None):
    """Count the request against its account's rate limit (the client IP's without one).

    Counts once per request however often it is called; raise Throttled when over the limit
    (a refused request is not counted, so asking again refuses it again).
    """
    if environ.get(_THROTTLED):
        return
    key = account_key(caller) if caller is not None else account_key(ip=client_ip(environ))
    services(environ).limiter.check(key)
    environ[_THROTTLED] = True


@functools.lru_cache(maxsize=1024)
def snake_case(name: str) -> str:
    """Query-parameter names as Phase's CamelCaseMiddleWare sees them (appId, APP_ID -> app_id)."""
    return _CAMEL_BOUNDARY.sub(r"\1_\2", name).lower()


def query_args(environ) -> Mapping[str, str]:
    """Query parameters with names normalised to snake_case; the last value wins (Django's).

    Parsed as werkzeug parses ``request.args``. Clients repeat the same few query strings, so
    the parsed form of recent ones is kept (read-only).
    """
    query = environ.get("QUERY_STRING", "")
    found = _PARSED_QUERIES.get(query)
    if found is None:
        pairs = parse_qsl(query.encode("latin-1").decode(), keep_blank_values=True,
                          errors="werkzeug.url_quote")
        found = MappingProxyType({snake_case(name): value for name, value in pairs})
        if len(query) <= PARSED_QUERY_MAX_LENGTH:
            if len(_PARSED_QUERIES) >= PARSED_QUERIES_KEPT:
                _PARSED_QUERIES.clear()
            _PARSED_QUERIES[query] = found
    return found


PARSED_QUERIES_KEPT = 512
PARSED_QUERY_MAX_LENGTH = 2048
_PARSED_QUERIES: dict[str, Mapping[str, str]] = {}


def scope_headers(environ) -> dict:
    """The request headers that name a scope, for ``Authenticator.resolve_scope``."""
    return {"Secret-Id": environ.get("HTTP_SECRET_ID"),
            "Environment": environ.get("HTTP_ENVIRONMENT")}


def client_ip(environ) -> str | None:
    """The client address: the one function every consumer asks (audit log, access log,
    anonymous rate limit, console sign-in throttle).

    Forwarding headers are believed only when the peer is a trusted proxy
    (PHASE_LITE_TRUSTED_PROXIES). ``X-Forwarded-For`` is read from the right, as Werkzeug's
    ProxyFix and nginx's ``real_ip_recursive`` do: a proxy appends the address it saw, so
    only the entries trusted proxies wrote count, and the client's own (anything left of
    them) never does. The answer is the right-most entry that is not a trusted proxy; the
    left-most if all are; the nearest trusted hop if an invalid entry comes first.
    ``X-Real-IP`` is believed only when no ``X-Forwarded-For`` came (a proxy that appends
    one may pass a client's ``X-Real-IP`` through untouched).
    """
    peer = environ.get("REMOTE_ADDR")
    proxies = services(environ).config.trusted_proxies
    if not proxies or not is_trusted_proxy(peer, proxies):
        return peer_address(peer)
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded is None:
        candidate = environ.get("HTTP_X_REAL_IP", "").strip()
        return candidate if _valid_ip(candidate) else peer
    client = peer
    for entry in reversed(forwarded.split(",")):
        entry = entry.strip()
        if not _valid_ip(entry):
            break
        client = entry
        if not is_trusted_proxy(entry, proxies):
            break
    return client


def peer_address(peer: str | None) -> str | None:
    """The socket's peer address (``REMOTE_ADDR``) if it is an IP address."""
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
def is_trusted_proxy(peer, proxies: tuple) -> bool:
    """Whether ``peer`` is in one of ``proxies`` (PHASE_LITE_TRUSTED_PROXIES)."""
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


def request_meta(environ) -> RequestMeta:
    return RequestMeta(ip_address=client_ip(environ),
                       user_agent=environ.get("HTTP_USER_AGENT") or "Unknown")
