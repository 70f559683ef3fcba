"""The console's HTTP plumbing: blueprint, session cookie, CSRF, security headers, errors.

Pages live under ``/console/`` (no API path starts so), static files under ``/static/console/``; a
browser asking ``/`` for HTML is shown the console (``ConsoleRootMiddleware``) while every
other client keeps the API root's JSON. Every request of a method other than GET, HEAD and
OPTIONS carries a CSRF token: the signed-in pages' token is derived from the session cookie
(``sessions.csrf_token_of``), the anonymous forms (sign-in, one-time links) use a double-submit
cookie. A refused request changes nothing. Only a POST writes (``posted``): Flask routes a HEAD
to the GET view, so a view asks ``posted()``, never ``method == "GET"``, and a GET or HEAD only
reads, whatever body it carries.
"""

import dataclasses
import functools
import hmac
import logging
import re
import secrets as random_tokens
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from .. import links
from ..access_log import loggable_path
from ..request_context import client_ip, request_meta, set_principal
from ..errors import InvalidRequest, PhaseError, status_of
from . import sessions
from .actions import Caller

log = logging.getLogger("phase_lite.console")

bp = Blueprint("console", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/console")

PREFIX = "/console"
SESSION_COOKIE = "phase_lite_session"
ANON_CSRF_COOKIE = "phase_lite_csrf"
THEME_COOKIE = "phase_lite_theme"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_REFUSED = ("This form expired or did not come from this site. Reload the page and try "
                "again.")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# The largest body a visitor without a session may send (sign-in, one-time link, a share's
# reveal): their fields are an email, a password or two and a token.
ANONYMOUS_BODY_MAX = 16 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # they only read; every other needs a token
ANONYMOUS_ENDPOINTS = {"console.sign_in", "console.use_link", "console.static",
                       "console.oidc_start", "console.oidc_callback"}
# Posts that act on no session and no cookie, only on a capability in the URL (a Lockbox
# link's id): a forged post from another site could do nothing its URL does not already allow.
CAPABILITY_ENDPOINTS = {"console.reveal_share"}


class ConsoleRootMiddleware:
    """Show the console to a browser opening ``/``: a GET of exactly ``/`` as the client sent
    it (``REQUEST_URI``, which waitress and werkzeug set; ``PATH_INFO`` has lost any
    ``/service`` or ``/public`` prefix by now) whose Accept names ``text/html``. Phase's
    clients never ask for HTML, so they keep the API root's JSON, as do ``/service/`` and
    ``/service/public/``. Sits inside ``api.PrefixMiddleware`` (``app.build_middleware``)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if (environ.get("PATH_INFO") == "/" and environ.get("REQUEST_METHOD") in ("GET", "HEAD")
                and "text/html" in environ.get("HTTP_ACCEPT", "")
                and urlsplit(environ.get("REQUEST_URI", "")).path == "/"):
            environ["PATH_INFO"] = PREFIX + "/"
        return self.wsgi_app(environ, start_response)


def services():
    return current_app.extensions["phase_lite"]


def session_settings() -> sessions.SessionSettings:
    config = services().config
    return sessions.SessionSettings(idle=timedelta(minutes=config.session_idle_minutes),
                                    absolute=timedelta(hours=config.session_max_hours))


def throttle() -> sessions.SignInThrottle:
    """The sign-in throttle, which also counts password changes (by the user's email)."""
    return current_app.extensions["phase_lite_console_throttle"]


THROTTLED = "Too many {what} attempts. Try again in {minutes} minute{s}."


def throttled_text(wait, what="sign-in") -> str:
    minutes = max(1, round(wait / 60))
    return THROTTLED.format(what=what, minutes=minutes, s="" if minutes == 1 else "s")


def is_https() -> bool:
    """Served over HTTPS: known from the request, or from a trusted proxy's header."""
    return links.request_is_https(services().config, request.environ)


def absolute_link(path: str) -> str:
    """A link to ``path`` to show on a page: the public URL's, else this request's."""
    return links.link(services().config, path, request.environ)


def console_meta():
    """Where the request came from, as the audit log names it: the console channel."""
    return dataclasses.replace(request_meta(request.environ), channel="console")


def visitor_ip():
    return client_ip(request.environ)


def caller() -> Caller:
    signed_in = g.signed_in
    return Caller(services(), signed_in.principal, console_meta(), signed_in.session_id)


# -- every console request -------------------------------------------------------------------


@bp.before_request
def load_session():
    load_visitor()
    if request.method not in SAFE_METHODS:
        if g.signed_in is None:  # bounded before any field is read: no visitor fills memory
            request.max_content_length = ANONYMOUS_BODY_MAX
            if (request.content_length or 0) > ANONYMOUS_BODY_MAX:
                abort(413)  # (also where the view would read nothing)
        check_csrf()


def posted() -> bool:
    """Whether this request may write: a POST (its CSRF token checked already). A GET or a
    HEAD (which Flask routes to the GET view) only reads, whatever its body holds."""
    return request.method == "POST"


def load_visitor():
    g.signed_in = sessions.authenticate(services().db, session_settings(),
                                        request.cookies.get(SESSION_COOKIE))
    if g.signed_in is not None:  # the access log names the caller's account, as for the API
        set_principal(request.environ, g.signed_in.principal)
    g.anon_csrf = request.cookies.get(ANON_CSRF_COOKIE) or None


@bp.before_app_request
def unrouted_console_path():
    """An unknown console path, or a method a console page does not take, is answered as a
    console page (a console path without its trailing slash is sent to it). Flask raises
    routing errors after the request hooks and outside any blueprint, so the API's JSON
    handlers would answer them; every other path keeps those."""
    error = request.routing_exception
    if error is None or not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
        return None
    if isinstance(error, RequestRedirect):  # a console path without its slash: no API's path
        return redirect(error.new_url, error.code)
    load_visitor()
    response = current_app.make_response(http_error(error))
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return secure_headers(response)


def check_csrf():
    if request.endpoint in CAPABILITY_ENDPOINTS:
        return
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if request.endpoint in ANONYMOUS_ENDPOINTS:
        expected = g.anon_csrf
    elif g.signed_in is not None:
        expected = g.signed_in.csrf_token
    else:
        return  # the view sends the visitor to the sign-in page; nothing is done
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(403, CSRF_REFUSED)


@bp.after_request
def secure_headers(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint in ANONYMOUS_ENDPOINTS and g.get("anon_csrf_new"):
        response.set_cookie(ANON_CSRF_COOKIE, g.anon_csrf_new, httponly=True, samesite="Lax",
                            secure=is_https(), path=PREFIX + "/")
    return response


def anonymous_csrf_token() -> str:
    """The double-submit token of an anonymous form (a cookie set with the page)."""
    if g.get("anon_csrf") is None:
        g.anon_csrf = g.anon_csrf_new = random_tokens.token_urlsafe(32)
    return g.anon_csrf


@bp.app_template_global()
def csrf_token() -> str:
    if g.get("signed_in") is not None:
        return g.signed_in.csrf_token
    return anonymous_csrf_token()


@bp.app_template_filter()
def exact_text(value) -> Markup:
    """``value`` escaped for an element's text so that it reads back byte for byte: an HTML
    parser turns a raw carriage return into a line feed, a character reference it keeps (a
    revealed value's copy button copies the element's text)."""
    return Markup(str(escape(value)).replace("\r", "&#13;"))


def set_session_cookie(response, cookie_value):
    config = services().config
    response.set_cookie(SESSION_COOKIE, cookie_value, httponly=True, samesite="Lax",
                        secure=is_https(), path="/",
                        max_age=config.session_max_hours * 3600)
    return response


def clear_session_cookie(response):
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Lax",
                           secure=is_https())
    return response


def signed_in(view):
    """Send visitors without a live session to the sign-in page (back here afterwards)."""
    @functools.wraps(view)
    def guarded(**kwargs):
        if g.signed_in is None:
            target = request.full_path if not posted() else None
            return redirect(url_for("console.sign_in", next=safe_next(target)), 303)
        return view(**kwargs)
    return guarded


# Pages outside ``/console/`` that a sign-in may return to: the Phase CLI opens
# ``{PHASE_HOST}/webauth/<data>`` (``webauth_pages``).
RETURN_PREFIXES = (PREFIX + "/", "/webauth/")
NEXT_MAX = 2048  # characters of a ``next`` target kept


def safe_next(target) -> str | None:
    """A local console path to return to, or None: never another site (a scheme, ``//host``,
    a backslash, which browsers read as a slash), never a control character, space or line
    separator (a ``Location`` header cannot carry them), never a ``..`` segment."""
    if not target or len(target) > NEXT_MAX or target.startswith("//"):
        return None
    if any(char == "\\" or char.isspace() or not char.isprintable() for char in target):
        return None
    parts = urlsplit(target)
    if (parts.scheme or parts.netloc or not parts.path.startswith(RETURN_PREFIXES)
            or ".." in parts.path.split("/")):
        return None
    return target.rstrip("?")


def console_origin() -> str:
    """The scheme, host and port this console is reached at, as the browser sees them: the
    public URL's, else the request's (the scheme from a trusted proxy's header)."""
    parts = urlsplit(links.base_url(services().config, request.environ))
    return f"{parts.scheme}://{parts.netloc}"


def render(template, status=200, **context):
    theme = request.cookies.get(THEME_COOKIE)
    context.setdefault("theme", theme if theme in ("light", "dark") else None)
    context.setdefault("me", g.signed_in.principal if g.get("signed_in") else None)
    context.setdefault("notice", notice_text())
    return render_template(template, **context), status


CONFIRMED_FIELD = "confirmed"


def unconfirmed(question, button, cancel_url, detail=None, **carry):
    """Ask before a destructive action: a GET, or a POST without ``confirmed=yes``, is
    answered with a page that says what will happen, whose button posts again with it (no
    script needed; the script only asks in place). None once confirmed. ``carry`` holds
    fields to repeat."""
    if posted() and request.form.get(CONFIRMED_FIELD) == "yes":
        return None
    return render("confirm.html", question=question, detail=detail, button=button,
                  action=request.path, cancel_url=cancel_url, carry=carry)


def ask_then(question, button, cancel_url, detail, act, endpoint, notice, **values):
    """Ask first (``unconfirmed``); once confirmed, ``act()`` and see ``endpoint`` again with
    ``notice`` (a dict ``act`` returns fills the notice's numbers)."""
    asked = unconfirmed(question, button, cancel_url, detail)
    if asked is not None:
        return asked
    return back(endpoint, notice, act(), **values)


WHOLE_NUMBER_MAX = 2 ** 63 - 1  # the largest integer SQLite and PostgreSQL's bigint hold
NOT_A_NUMBER = "'{name}' must be a whole number from {low} to {high}."


def whole_number(text, name, low=0, high=WHOLE_NUMBER_MAX) -> int | None:
    """A whole number a query or form field holds (None when absent or empty); 400
    (InvalidRequest) when it is not one or lies outside ``low``..``high``, before any query
    could overflow on it."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdecimal() and len(text) <= 19
            and low <= int(text) <= high):
        raise InvalidRequest(NOT_A_NUMBER.format(name=name, low=low, high=high))
    return int(text)


def refused(template, error, **context):
    """The form again with the domain's message, under the status the API would answer."""
    return render(template, status_of(error), error=error.message, **context)


# What a page says after a change (post/redirect/get): the redirect names a notice and its
# numbers only, so no text of the visitor's (or an attacker's) choosing, and no key name,
# travels in the URL.
NOTICES = {
    "app_created": "App created.",
    "app_saved": "App saved.",
    "app_deleted": "App deleted.",
    "environment_created": "Environment created.",
    "environment_renamed": "Environment renamed.",
    "environment_moved": "Environment moved.",
    "environment_deleted": "Environment deleted.",
    "secret_created": "Secret created.",
    "key_created": "Secret created in {environments} environment(s).",
    "secret_saved": "Secret saved.",
    "secret_deleted": "Secret deleted.",
    "secret_restored": "Secret restored.",
    "version_restored": "Version {version} restored.",
    "bulk_saved": ("Saved: {created} created, {updated} updated, {deleted} deleted, "
                   "{unchanged} unchanged."),
    "role_changed": "Role changed.",
    "token_revoked": "Token revoked.",
    "access_saved": "Access saved.",
    "service_account_deleted": "Service account deleted.",
    "member_removed": "Member removed.",
    "password_changed": "Password changed. Your other sessions were signed out.",
    "signed_out_others": "Signed out {ended} other session(s).",
    "welcome": "Your password is set. Welcome!",
    "share_revoked": "Share revoked: its link no longer opens.",
    "mirror_synced": "Synced from the source: {created} created, {updated} updated, "
                     "{deleted} deleted.",
    "mirror_failed": "The sync failed; the last good copy stays (the reason is below).",
}


def back(endpoint, notice=None, counts=None, **values):
    """Post/redirect/get: see the page again, with a notice (``NOTICES``) when given;
    ``counts`` fills its numbers."""
    if notice:
        values["notice"] = notice
        values.update({name: int(number) for name, number in (counts or {}).items()})
    return redirect(url_for(endpoint, **values), 303)


def notice_text():
    """The notice a redirect asked for, or None."""
    template = NOTICES.get(request.args.get("notice", ""))
    if template is None:
        return None
    numbers = {}
    for name in re.findall(r"{(\w+)}", template):
        value = request.args.get(name, "")
        if not (value.isascii() and value.isdecimal() and len(value) <= 19):
            return None
        numbers[name] = int(value)
    return template.format(**numbers)


# -- errors ----------------------------------------------------------------------------------


@bp.errorhandler(PhaseError)
def domain_error(error):
    status = status_of(error)
    return render("error.html", status, status_code=status, message=error.message)


@bp.errorhandler(HTTPException)
def http_error(error):
    status = error.code or 500
    message = error.description if status in (400, 403) else error.name
    return render("error.html", status, status_code=status, message=message)


@bp.errorhandler(Exception)
def unexpected(error):
    """A failure in a console page: logged by class (never its message, which may hold a
    value), answered with the console's error page."""
    log.error("unhandled %s on %s %s", error.__class__.__name__, request.method,
              loggable_path(request.path), exc_info=current_app.debug)
    return render("error.html", 500, status_code=500,
                  message="Something went wrong on the server.")
