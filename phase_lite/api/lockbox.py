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
from flask.views import MethodView
from werkzeug.exceptions import MethodNotAllowed

from .. import links, lockbox, schemas, secrets
from ..store import now
from . import json_response
from ..request_context import principal, request_meta, services, throttle
from .history import blp

_ERRORS = {
    400: "Invalid body: ciphertext, expiry or views out of bounds",
    401: "Missing, malformed, unknown or expired token",
    404: "No such share, or it is gone (viewed, expired or revoked)",
    429: "Rate limit exceeded",
}
_NOT_YOURS = {404: "No share of the caller's with this id"}


def extension(status, schema, description, *statuses, body=None, public=False, errors=None):
    """Document a Lockbox operation (marked ``x-phase-lite-extension``); ``errors`` overrides
    the description of an error status."""
    described = {**_ERRORS, **(errors or {})}

    def decorate(view):
        doc = {"x-phase-lite-extension": True}
        if public:
            doc["security"] = []
        if body is not None:
            doc["requestBody"] = {"required": True,
                                  "content": {"application/json": {"schema": body}}}
        view = blp.doc(**doc)(view)
        for code in reversed((*statuses, 429)):
            view = blp.alt_response(code, schema=schemas.Error,
                                    description=described[code])(view)
        if schema is None:  # 204: no body
            return blp.alt_response(status, success=True, description=description)(view)
        return blp.alt_response(status, schema=schema, success=True,
                                description=description)(view)

    return decorate


@blp.route("/v1/lockbox/", methods=["GET", "POST"])
class Shares(MethodView):
    init_every_request = False

    @extension(200, schemas.LockboxShareList, "The caller's shares, newest first", 401)
    def get(self):
        """List the caller's Lockbox shares (never their content or link)"""
        environ = request.environ
        caller = principal(environ)
        throttle(environ, caller)
        moment = now()
        return json_response({"data": [lockbox.share_body(row, moment) for row in
                                       lockbox.shares_of(services(environ), caller)]})

    @extension(201, schemas.LockboxShareCreated, "The new share; its link is shown once", 400,
               401, body=schemas.NewLockboxShare)
    def post(self):
        """Create a Lockbox share of a value encrypted by the caller"""
        environ = request.environ
        caller = principal(environ)
        throttle(environ, caller)
        new = lockbox.parse_new_share(secrets.parse_body(request.get_data()))
        share = lockbox.create_share(services(environ), caller, new, request_meta(environ))
        url = links.link(services(environ).config, share.path, environ)
        return json_response(lockbox.created_body(share, url), 201)


@blp.route("/v1/lockbox/<link_id>/")
class Share(MethodView):
    init_every_request = False

    @extension(200, schemas.LockboxShareOpened, "The ciphertext; one view counted", 404,
               public=True)
    def get(self, link_id):
        """Open a Lockbox share (no token; counts one view)"""
        environ = request.environ
        if environ["REQUEST_METHOD"] == "HEAD":
            # Flask answers HEAD with the GET view, which would count a view and send nothing;
            # refused as Phase's views refuse a method they lack (a HEAD writes nothing).
            raise MethodNotAllowed(valid_methods=["GET"])
        throttle(environ)
        opened = lockbox.open_share(services(environ), link_id, request_meta(environ))
        return json_response(lockbox.opened_body(opened))


@blp.route("/v1/lockbox/shares/<share_id>/", methods=["DELETE"])
class OwnShare(MethodView):
    init_every_request = False

    @extension(204, None, "Revoked (or already gone): its link no longer opens", 401, 404,
               errors=_NOT_YOURS)
    def delete(self, share_id):
        """Revoke one of the caller's Lockbox shares (by its id, not its link's)"""
        environ = request.environ
        caller = principal(environ)
        throttle(environ, caller)
        lockbox.revoke_share(services(environ), caller, share_id, request_meta(environ))
        return Response(status=204)
