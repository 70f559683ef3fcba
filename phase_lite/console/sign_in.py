"""Signing in and out, one-time links to choose a password, the home redirect."""

from flask import g, redirect, request, url_for

from ..errors import PhaseError, status_of
from . import sessions
from .web import (ANON_CSRF_COOKIE, PREFIX, back, bp, clear_session_cookie, console_meta, posted,
                  render, safe_next, services, session_settings, set_session_cookie,
                  signed_in, throttle, throttled_text, visitor_ip)

@bp.route(PREFIX + "/")
@signed_in
def home():
    return redirect(url_for("console.apps"), 303)


@bp.route(PREFIX + "/sign-in", methods=["GET", "POST"])
def sign_in():
    target = safe_next(request.values.get("next"))
    if g.signed_in is not None and not posted():
        return redirect(target or url_for("console.apps"), 303)
    if not posted():
        return render("sign_in.html", next=target, email="")
    email = request.form.get("email", "").strip()
    password = request.form.get("password", "")
    try:  # before the throttle counts it or a hash is computed
        sessions.check_field_sizes(email, password)
    except PhaseError as exc:
        return render("sign_in.html", status_of(exc), next=target, email="", error=exc.message)
    wait = throttle().attempt(visitor_ip(), email)
    if wait:
        return render("sign_in.html", 429, next=target, email=email, error=throttled_text(wait))
    try:
        cookie_value = sessions.sign_in(services().db, session_settings(), email, password,
                                        console_meta())
    except PhaseError as exc:
        return render("sign_in.html", 401, next=target, email=email, error=exc.message)
    throttle().forgive(visitor_ip(), email)  # only failures count toward the lockout
    response = redirect(target or url_for("console.apps"), 303)
    response.delete_cookie(ANON_CSRF_COOKIE, path=PREFIX + "/")
    return set_session_cookie(response, cookie_value)


@bp.route(PREFIX + "/sign-out", methods=["POST"])
def sign_out():
    if g.signed_in is not None:
        sessions.sign_out(services().db, g.signed_in, console_meta())
    response = redirect(url_for("console.sign_in"), 303)
    return clear_session_cookie(response)


@bp.route(PREFIX + "/welcome", methods=["GET", "POST"])
def use_link():
    """A one-time link (the owner's first sign-in, an invitation): choose a password.

    The link's token is in the query string (GET) or the form (POST), never in the path: the
    access log writes paths, not query strings."""
    db = services().db
    token = request.values.get("token", "")
    link = sessions.link_holder(db, token)
    if link is None:
        return render("link.html", 404, link=None)
    if not posted():
        return render("link.html", link=link, token=token)
    try:
        cookie_value = sessions.use_link(db, session_settings(), token,
                                         request.form.get("password", ""),
                                         request.form.get("confirmation", ""), console_meta())
    except PhaseError as exc:
        return render("link.html", 400, link=link, token=token, error=exc.message)
    g.signed_in = None
    response = back("console.apps", "welcome")
    response.delete_cookie(ANON_CSRF_COOKIE, path=PREFIX + "/")
    return set_session_cookie(response, cookie_value)
