"""Lockbox in the console: the share form (blank, or filled from a secret), the creator's
shares with revoke, and the page a link opens.

The value is encrypted in the browser (``static/lockbox.js``); the form's posts carry only the
ciphertext, the expiry and the views, never the value or the key. The share page
(``/lockbox/<link_id>``) needs no session: a GET shows what it is and counts nothing (link
previews fetch it); its script posts to the same path to reveal, which counts one view.
"""

from flask import request, url_for

from .. import lockbox
from ..api import json_response
from ..request_context import throttle
from ..errors import PhaseError, status_of
from ..store import now
from . import actions
from .web import (PREFIX, absolute_link, back, bp, caller, console_meta, posted, render, services,
                  signed_in, unconfirmed)

EXPIRY_OPTIONS = ((str(lockbox.DAY), "1 day"), (str(7 * lockbox.DAY), "7 days"),
                  (str(30 * lockbox.DAY), "30 days"), ("custom", "Custom"))
NEEDS_SCRIPT = ("Creating a share needs JavaScript: the value is encrypted in your browser "
                "and never sent to the server.")


def share_form(value="", source=None, status=200, error=None):
    return render("share_form.html", status, nav="lockbox", value=value, source=source,
                  expiries=EXPIRY_OPTIONS, max_views=lockbox.MAX_VIEWS,
                  min_expiry=lockbox.MIN_EXPIRY, max_expiry=lockbox.MAX_EXPIRY, error=error)


@bp.route(PREFIX + "/lockbox/")
@signed_in
def shares():
    return render("shares.html", nav="lockbox", shares=actions.shares(caller()), now=now(),
                  state_of=lockbox.state_of)


@bp.route(PREFIX + "/lockbox/new", methods=["GET", "POST"])
@signed_in
def new_share():
    """The blank form (GET); the script's post of a ciphertext (POST, answered in JSON)."""
    if not posted():
        return share_form()
    if request.accept_mimetypes.best != "application/json":
        # Only the script can make the link (it holds the key): a plain form post shares
        # nothing.
        return share_form(status=400, error=NEEDS_SCRIPT)
    try:
        fields = {"ciphertext": request.form.get("ciphertext", ""),
                  "expiresIn": request.form.get("expires_in", ""),
                  "views": request.form.get("views", "")}
        share = actions.create_share(caller(), lockbox.parse_new_share(fields))
    except PhaseError as exc:
        return json_response({"error": exc.message}, status_of(exc))
    return json_response(lockbox.created_body(share, absolute_link(share.path)))


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/secrets/<secret_id>/share")
@signed_in
def share_secret(app_id, env_id, secret_id):
    """The share form with the secret's value (as revealed: a read, like opening the
    editor); sealed secrets are never revealed, so never shared."""
    who = caller()
    _, env = actions.environment(who, app_id, env_id)
    secret = actions.get_secret(who, env, secret_id)
    if secret.type == "sealed":
        return share_form(status=400, error="A sealed secret's value is never revealed, so it "
                                            "cannot be shared.")
    found = actions.reveal(who, env, [secret.id])
    return share_form(value=found[secret.id]["value"], source=secret.key)


@bp.route(PREFIX + "/lockbox/<share_id>/revoke", methods=["GET", "POST"])
@signed_in
def revoke_share(share_id):
    asked = unconfirmed("Revoke this share?", "Revoke share", url_for("console.shares"),
                        "Its link stops opening at once; nobody can reveal it any more.")
    if asked is not None:
        return asked
    actions.revoke_share(caller(), share_id)
    return back("console.shares", "share_revoked")


# -- the page a link opens (no session) ------------------------------------------------------


@bp.route("/lockbox/<link_id>")
def share_page(link_id):
    """Say what this is; offer "Reveal" while the share lives. Counts no view."""
    live = actions.share_exists(services(), link_id)
    return render("share_page.html", 200 if live else 404, live=live)


@bp.route("/lockbox/<link_id>", methods=["POST"])
def reveal_share(link_id):
    """One view: the ciphertext for the page's script to open with the link's key."""
    try:
        throttle(request.environ)
        opened = actions.open_share(services(), link_id, console_meta())
    except PhaseError as exc:
        return json_response({"error": exc.message}, status_of(exc))
    return json_response(lockbox.opened_body(opened))
