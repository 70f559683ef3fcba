"""Lockbox shares over REST: phase_lite extensions, not part of Phase's API.

``POST /v1/lockbox/`` (under the same four prefixes as ``/v1/secrets/``) takes any user or
service-account token (401 without one, then the account's rate limit); it stores a ciphertext
made by the caller and answers the link's path once. ``GET /v1/lockbox/<link_id>/`` needs no
token (the link id is the capability), is rate-limited per client address and counts one view;
an unknown, viewed-out, expired or revoked share is the same 404. The access log writes these
paths as ``/v1/lockbox/{id}/`` (``access_log.loggable_path``).
"""

from flask import request
from flask.views import MethodView

from .. import lockbox, schemas, secrets
from . import json_response
from .context import principal, request_meta, services, throttle
from .history import blp

_ERRORS = {
    400: "Invalid body: ciphertext, expiry or views out of bounds",
    401: "Missing, malformed, unknown or expired token",
    404: "No such share, or it is gone (viewed, expired or revoked)",
    429: "Rate limit exceeded",
}


def extension(status, schema, description, *statuses, body=None, public=False):
    """Document a Lockbox operation (marked ``x-phase-lite-extension``)."""

    def decorate(view):
        doc = {"x-phase-lite-extension": True}
        if public:
            doc["security"] = []
        if body is not None:
            doc["requestBody"] = {"required": True,
                                  "content": {"application/json": {"schema": body}}}
        view = blp.doc(**doc)(view)
        for code in reversed((*statuses, 429)):
            view = blp.alt_response(code, schema=schemas.Error, description=_ERRORS[code])(view)
        return blp.alt_response(status, schema=schema, success=True,
                                description=description)(view)

    return decorate


@blp.route("/v1/lockbox/", methods=["POST"])
class Shares(MethodView):
    init_every_request = False

    @extension(201, schemas.LockboxShareCreated, "The new share; its link is shown once", 400,
               401, body=schemas.NewLockboxShare)
    def post(self):
        """Create a Lockbox share of a value encrypted by the caller"""
        environ = request.environ
        caller = principal(environ)
        throttle(environ, caller)
        new = lockbox.parse_new_share(secrets.parse_body(request.get_data()))
        share = lockbox.create_share(services(environ), caller, new, request_meta(environ))
        return json_response(lockbox.created_body(share), 201)


@blp.route("/v1/lockbox/<link_id>/")
class Share(MethodView):
    init_every_request = False

    @extension(200, schemas.LockboxShareOpened, "The ciphertext; one view counted", 404,
               public=True)
    def get(self, link_id):
        """Open a Lockbox share (no token; counts one view)"""
        environ = request.environ
        throttle(environ)
        opened = lockbox.open_share(services(environ), link_id, request_meta(environ))
        return json_response(lockbox.opened_body(opened))
