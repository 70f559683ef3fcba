"""``phase auth`` in a browser: the page the Phase CLI opens, ``/webauth/<data>``.

A GET says what will happen and mints nothing (a visitor not signed in is sent to the sign-in
page and back). Authorise is a POST with the session's CSRF token, sent by the page's script
(``static/webauth.js``): the answer is the token's ciphertext for the CLI, which the script
posts to ``http://localhost:<port>/`` (the only place this page's CSP lets it reach besides
this site). If the CLI does not take it, the script revokes the token at once through the
account page's revocation. Cancel is a GET that shows that nothing was made.
"""

from flask import request, url_for
from werkzeug.routing import PathConverter

from .. import webauth
from ..api import json_response
from ..errors import InvalidRequest, PhaseError, status_of
from . import actions
from .access_pages import DEFAULT_TOKEN_EXPIRY, _expires_in
from .web import (CONTENT_SECURITY_POLICY, bp, caller, console_origin, posted, render,
                  signed_in)

NEEDS_SCRIPT = ("Authorising the Phase CLI needs JavaScript: your browser hands the CLI its "
                "token. Nothing was created.")


def page(data, cli=None, status=200, problem=None, **context):
    """The page for ``cli`` (None: the link did not parse, and ``problem`` says why)."""
    same_name = [token for token in actions.personal_tokens(caller())
                 if cli is not None and token["name"] == cli.name]
    response = render("webauth.html", status, cli=cli, problem=problem, data=data,
                      same_name=same_name, expiry_label=DEFAULT_TOKEN_EXPIRY[1],
                      origin=console_origin(), **context)
    if cli is None:
        return response
    body, status = response
    return body, status, {"Content-Security-Policy": CONTENT_SECURITY_POLICY.replace(
        "connect-src 'self'", f"connect-src 'self' {cli.origin}")}


class LinkData(PathConverter):
    """A link's data as it came. The CLI's base64 (of UTF-8) never starts with "/" nor holds
    "//"; an altered link may, and still gets this page's clear error, not the router's
    slash-merging redirect or the API's JSON 404."""
    regex = ".+"
    part_isolating = False  # (werkzeug infers it from a "/" in the regex)


@bp.route("/webauth/<link_data:data>", methods=["GET", "POST"], merge_slashes=False)
@signed_in
def authorise_cli(data):
    try:
        cli = webauth.parse_request(data)
    except InvalidRequest as exc:
        if posted() and _wants_json():
            return json_response({"error": exc.message}, status_of(exc))
        return page(data, status=status_of(exc), problem=exc.message)
    if not posted():  # a GET or a HEAD (routed to this view) only shows the page
        return page(data, cli, cancelled="cancelled" in request.args)
    if not _wants_json():
        # Only the script can hand the CLI its token: a plain form post mints nothing.
        return page(data, cli, 400, error=NEEDS_SCRIPT)
    try:
        answer = actions.authorise_cli(caller(), cli, _expires_in(DEFAULT_TOKEN_EXPIRY[0]))
    except PhaseError as exc:
        return json_response({"error": exc.message}, status_of(exc))
    return json_response({
        "target": cli.target, "body": answer.body,
        "revoke": url_for("console.revoke_personal_token", token_id=answer.token_id),
    })


def _wants_json():
    return request.accept_mimetypes.best == "application/json"
