"""Console sign-in through the OpenID provider: the start, the callback, the sign-in page's
"Sign in with ..." link, and password sign-in turned off (``PHASE_LITE_PASSWORD_SIGN_IN``).

The start is a GET link, not a form: the console's CSP (``form-action 'self'``) would stop a
form's redirect to the provider, and a started flow changes nothing but a cookie of this
browser's (see ``oidc`` for why a forged start cannot sign anyone in as someone else).
"""

from flask import current_app, g, redirect, request, url_for

from . import oidc
from .web import (ANON_CSRF_COOKIE, PREFIX, absolute_link, bp, console_meta, is_https, render,
                  safe_next, services, session_settings, set_session_cookie, throttle, visitor_ip)

FLOW_COOKIE = "phase_lite_oidc"
FLOW_PATH = PREFIX + "/oidc/"
PASSWORD_OFF = "Password sign-in is turned off here: sign in with {name}."
UNAVAILABLE = ("Sign-in with {name} is not available right now: the provider does not "
               "answer. Try again in a few minutes.")
THROTTLED = "Too many sign-in attempts. Try again in {minutes} minute{s}."


def provider() -> "oidc.OpenIDProvider | None":
    return current_app.extensions.get("phase_lite_oidc")


def callback_url() -> str:
    """The redirect URI registered at the provider: ``<public URL>/console/oidc/callback``.

    Built as every link the console shows (``absolute_link``): the public URL when set, else
    the request's host and its trusted scheme."""
    return absolute_link(url_for("console.oidc_callback"))


@bp.context_processor
def sign_in_choices():
    """What the sign-in page offers: the password form, the provider's link, its state."""
    found = provider()
    return {
        "password_sign_in": services().config.password_sign_in if found else True,
        "oidc_name": found.name if found else None,
        "oidc_down": bool(found and found.status == "unavailable"),
    }


@bp.before_request
def refuse_password_when_off():
    """With ``PHASE_LITE_PASSWORD_SIGN_IN=off`` the password form is neither shown nor
    taken (the one-time setup links still work: they rescue an Owner)."""
    found = provider()
    if (request.endpoint == "console.sign_in" and request.method == "POST" and found
            and not services().config.password_sign_in):
        return render("sign_in.html", 403, next=None, email="",
                      error=PASSWORD_OFF.format(name=found.name))
    return None


@bp.route(FLOW_PATH + "sign-in")
def oidc_start():
    found = provider()
    if found is None:
        return render("error.html", 404, status_code=404, message="Not Found")
    flow = oidc.Flow.start(safe_next(request.args.get("next")))
    try:
        location = found.authorization_url(flow, callback_url())
    except oidc.ProviderUnavailable:
        return render("sign_in.html", 503, next=flow.next, email="",
                      error=UNAVAILABLE.format(name=found.name))
    except oidc.ProviderMisconfigured:
        return render("sign_in.html", 503, next=flow.next, email="",
                      error=f"Sign-in with {found.name} is misconfigured on this server: "
                            "see its log.")
    response = redirect(location, 303)
    response.set_cookie(FLOW_COOKIE, flow.cookie_value(), max_age=oidc.FLOW_LIFETIME,
                        httponly=True, samesite="Lax", secure=is_https(), path=FLOW_PATH)
    return response


@bp.route(FLOW_PATH + "callback")
def oidc_callback():
    """The provider sends the browser back here with a GET (OAuth's query response mode: a
    cross-site POST would carry neither the flow's SameSite cookie nor a CSRF token). So this
    GET signs in; a HEAD does nothing, as it must not use up the code."""
    found = provider()
    if found is None:
        return render("error.html", 404, status_code=404, message="Not Found")
    if request.method != "GET":
        return redirect(url_for("console.sign_in"), 303)
    counted = "oidc callback " + request.args.get("state", "")[:64]
    wait = throttle().attempt(visitor_ip(), counted)
    if wait:
        minutes = max(1, round(wait / 60))
        return render("sign_in.html", 429, next=None, email="",
                      error=THROTTLED.format(minutes=minutes, s="" if minutes == 1 else "s"))
    flow = oidc.Flow.from_cookie(request.cookies.get(FLOW_COOKIE))
    db, meta = services().db, console_meta()
    try:
        claims = found.finish(flow, request.args, callback_url())
        cookie_value = oidc.sign_in(db, session_settings(), services().config.oidc,
                                    found.name, claims, meta)
    except oidc.SignInRefused as refused:
        oidc.record_refusal(db, found.name, refused, meta)
        response = current_app.make_response(
            render("oidc_refused.html", 403, message=refused.message, name=found.name))
    except (oidc.ProviderUnavailable, oidc.ProviderMisconfigured):
        response = current_app.make_response(
            render("sign_in.html", 503, next=None, email="",
                   error=UNAVAILABLE.format(name=found.name)))
    else:
        throttle().forgive(visitor_ip(), counted)  # only failures count toward the lockout
        g.signed_in = None
        response = redirect(safe_next(flow.next) or url_for("console.apps"), 303)
        response.delete_cookie(ANON_CSRF_COOKIE, path=PREFIX + "/")
        set_session_cookie(response, cookie_value)
    response.delete_cookie(FLOW_COOKIE, path=FLOW_PATH, httponly=True, samesite="Lax",
                           secure=is_https())
    return response
