"""Lockbox shares over REST: phase_lite extensions, not part of Phase's API.

``POST /v1/lockbox/`` (under the same four prefixes as ``/v1/secrets/``) takes any user or
service-account token (401 without one, then the account's rate limit); it stores a ciphertext
made by the caller and answers the link's path once. ``GET /v1/lockbox/`` lists the caller's
own shares and ``DELETE /v1/lockbox/shares/<share_id>/`` revokes one (204; 404 for an unknown
id or another account's share), with the same token and limit. ``GET /v1/lockbox/<link_id>/``
needs no token (the link id is the capability), is rate-limited per client address and counts
one view; an unknown, viewed-out, expired or revoked share is the same 404. A HEAD of it is
refused with 405 ``Method "HEAD" not allowed.`` and counts nothing: a HEAD answered like the
GET would count the view it does not show. The access log
writes a link's path as ``/v1/lockbox/{id}/`` (``access_log.loggable_path``).

A revocation names the share by its row id, the one lists show, never by the link's id; so it
has a path of its own (``shares/<share_id>/``) rather than a second meaning for
``/v1/lockbox/<link_id>/``, whose id is a capability the access log hides.
"""

from flask import Response, request
from werkzeug.exceptions import MethodNotAllowed

from .. import links, lockbox, schemas, secrets
from ..request_context import principal, request_meta, services, throttle
from ..store import now
from . import json_response
from .docs import PhaseBlueprint, ScopedView
from .history import TAG

ERROR_DESCRIPTIONS = {
    400: "Invalid body: ciphertext, expiry or views out of bounds",
    401: "Missing, malformed, unknown or expired token",
    404: "No such share, or it is gone (viewed, expired or revoked)",
    429: "Rate limit exceeded",
}
blp = PhaseBlueprint("lockbox", __name__, description="Lockbox shares (phase_lite extensions)",
                     errors=ERROR_DESCRIPTIONS)


def route(rule, **options):
    """A Lockbox route, under the tag of every phase_lite extension."""
    return blp.route(rule, tags=[TAG], **options)


class CallerView(ScopedView):
    """A route for any user or service-account token (401 without one), counted against its
    account's rate limit; its handlers get the caller."""

    def steps(self, environ, method, **url_values):
        caller = principal(environ)
        throttle(environ, caller)
        return (caller,)


@route("/v1/lockbox/", methods=["GET", "POST"])
class Shares(CallerView):
    @blp.operation(200, schemas.LockboxShareList, "The caller's shares, newest first",
                   errors=(401, 429), extension=True)
    def get(self, caller):
        """List the caller's Lockbox shares (never their content or link)"""
        moment = now()
        return json_response({"data": [lockbox.share_body(row, moment) for row in
                                       lockbox.shares_of(services(request.environ), caller)]})

    @blp.operation(201, schemas.LockboxShareCreated, "The new share; its link is shown once",
                   errors=(400, 401, 429), body=schemas.NewLockboxShare, extension=True)
    def post(self, caller):
        """Create a Lockbox share of a value encrypted by the caller"""
        environ = request.environ
        new = lockbox.parse_new_share(secrets.parse_body(request.get_data()))
        share = lockbox.create_share(services(environ), caller, new, request_meta(environ))
        url = links.link(services(environ).config, share.path, environ)
        return json_response(lockbox.created_body(share, url), 201)


@route("/v1/lockbox/<link_id>/")
class Share(ScopedView):
    def steps(self, environ, method, **url_values):
        if method == "HEAD":
            # Flask answers HEAD with the GET view, which would count a view and send nothing;
            # refused as Phase's views refuse a method they lack (a HEAD writes nothing).
            raise MethodNotAllowed(valid_methods=["GET"])
        throttle(environ)  # per client address: no token
        return ()

    @blp.operation(200, schemas.LockboxShareOpened, "The ciphertext; one view counted",
                   errors=(404, 429), extension=True, public=True)
    def get(self, link_id):
        """Open a Lockbox share (no token; counts one view)"""
        environ = request.environ
        opened = lockbox.open_share(services(environ), link_id, request_meta(environ))
        return json_response(lockbox.opened_body(opened))


@route("/v1/lockbox/shares/<share_id>/", methods=["DELETE"])
class OwnShare(CallerView):
    @blp.operation(204, None, "Revoked (or already gone): its link no longer opens",
                   errors=(401, 404, 429), meanings={404: "No share of the caller's with this id"},
                   extension=True)
    def delete(self, caller, share_id):
        """Revoke one of the caller's Lockbox shares (by its id, not its link's)"""
        environ = request.environ
        lockbox.revoke_share(services(environ), caller, share_id, request_meta(environ))
        return Response(status=204)
