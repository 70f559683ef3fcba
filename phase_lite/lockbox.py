"""Lockbox: one value shared by a link that expires and burns after a number of views.

The browser encrypts the value (XChaCha20-Poly1305 from the vendored ``@noble/ciphers``) under a
fresh random 256-bit key and sends only the ciphertext; the link is ``/lockbox/<link id>#<key>``
and the fragment never leaves the browser, so the server can never read a share. The server
keeps the ciphertext, the expiry and the views left, and answers each view with the ciphertext
once. The link id is a bearer capability (256 random bits): only its SHA-256 is stored, and
shares are listed, revoked and audited by their own row id.

Every channel (REST, console) calls these functions; each records its audit event, without
content, in the transaction of its change. Those are bookkeeping transactions: no cached read
shows a share (its pages and lists read the table itself), so creating, viewing, revoking or
purging one leaves the read caches of secrets, tokens and scopes, in every process, as they were:

- ``create_share(services, principal, request, meta)`` -> ``CreatedShare`` (the link id is in
  it and nowhere else);
- ``open_share(services, link_id, meta)`` -> ``OpenedShare``: one view, counted atomically;
  the last view or the expiry deletes the ciphertext; a gone or unknown share raises
  ``DoesNotExist(SHARE_GONE)`` (the same answer for both);
- ``share_exists(services, link_id)``: whether a link still opens (the page asks before
  offering "Reveal"; no view is counted);
- ``shares_of(services, principal)``, ``all_shares(services, principal)`` (the admin
  command), ``state_of(row)``, ``share_body(row)`` (a listed share: REST and the admin
  command), ``revoke_share(services, principal, share_id, meta)``;
- ``purge_expired(db)``: expired ciphertexts deleted by the server (every
  ``PURGE_INTERVAL`` seconds while serving).

Stored format of a ciphertext, as the browser sends it (base64url without padding)::

    nonce (24, random) || XChaCha20-Poly1305(key, nonce, UTF-8 value, aad) (len + 16)
    aad = b"phase_lite/lockbox/v1"
"""

import base64
import binascii
import hashlib
import logging
import re
import secrets as random_tokens
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from . import audit
from .errors import DoesNotExist, InvalidRequest
from .store import format_time, now
from .store import audit as audit_store
from .store import lockbox as share_store

log = logging.getLogger("phase_lite.lockbox")
# The server's own deletions (a share viewed out, expired or revoked) come through no door.
SERVER_META = audit.RequestMeta(ip_address=None, user_agent="phase-lite server", channel=None)

DAY = 86400
EXPIRY_CHOICES = (DAY, 7 * DAY, 30 * DAY)  # what the console offers besides a custom time
MIN_EXPIRY = 60  # seconds
MAX_EXPIRY = 90 * DAY
DEFAULT_EXPIRY = DAY
MAX_VIEWS = 100
NONCE_BYTES, TAG_BYTES = 24, 16
MAX_VALUE_BYTES = 64 * 1024
PURGE_INTERVAL = 300.0  # seconds between the server's purges of expired shares
STATES = ("live", "viewed", "expired", "revoked")  # state_of: live, or why a share is gone
LINK_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32)
BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

SHARE_GONE = "This share does not exist, or it is gone (viewed, expired or revoked)."
SHARE_NOT_FOUND = "Share not found."
CIPHERTEXT_MISSING = "Missing required field: ciphertext"
CIPHERTEXT_INVALID = ("'ciphertext' must be base64url text of a 24-byte nonce, the encrypted "
                      "value and its 16-byte tag.")
VALUE_TOO_LARGE = f"The value is too large to share (at most {MAX_VALUE_BYTES} bytes)."
EXPIRY_INVALID = ("'expiresIn' must be a whole number of seconds from "
                  f"{MIN_EXPIRY} (a minute) to {MAX_EXPIRY} (90 days).")
VIEWS_INVALID = f"'views' must be a whole number from 1 to {MAX_VIEWS}."
CREATOR_INVALID = "Only a user or a service account can create a share."


@dataclass(frozen=True)
class NewShare:
    ciphertext: bytes
    expires_in: int  # seconds
    views: int


@dataclass(frozen=True)
class CreatedShare:
    id: str  # the row's id: lists, revocations, audit
    link_id: str  # the bearer capability of the link, shown once
    created_at: str
    expires_at: str
    views: int

    @property
    def path(self) -> str:
        return f"/lockbox/{self.link_id}"


@dataclass(frozen=True)
class OpenedShare:
    ciphertext: bytes
    views_left: int
    expires_at: str


# -- answers (REST and the console's script alike) --------------------------------------------


def created_body(share: CreatedShare, url: str) -> dict:
    """The answer to a new share; ``url`` is ``share.path`` made absolute (``links.link``)."""
    return {"id": share.id, "link": share.path, "url": url, "createdAt": share.created_at,
            "expiresAt": share.expires_at, "views": share.views}


def opened_body(opened: OpenedShare) -> dict:
    return {"ciphertext": encode_ciphertext(opened.ciphertext), "viewsLeft": opened.views_left,
            "expiresAt": opened.expires_at}


def share_body(row, moment=None) -> dict:
    """A listed share (a row of ``shares_of`` or ``all_shares``): never its ciphertext or link.
    A gone share has no views left; an expired one ended at its expiry, whenever it was
    purged."""
    state = state_of(row, moment)
    ended_at = row["expires_at"] if state == "expired" else row["ended_at"]
    return {"id": row["id"], "createdAt": row["created_at"], "expiresAt": row["expires_at"],
            "views": row["max_views"], "viewsLeft": row["views_left"] if state == "live" else 0,
            "state": state, "endedAt": ended_at}


# -- requests --------------------------------------------------------------------------------


def parse_new_share(body: dict) -> NewShare:
    """A create request ``{"ciphertext", "expiresIn"?, "views"?}``, checked before anything is
    written (``expiresIn`` defaults to a day, ``views`` to one)."""
    text = body.get("ciphertext")
    if text is None or text == "":
        raise InvalidRequest(CIPHERTEXT_MISSING)
    ciphertext = decode_ciphertext(text)
    expires_in = _whole_number(body.get("expiresIn", DEFAULT_EXPIRY), MIN_EXPIRY, MAX_EXPIRY,
                               EXPIRY_INVALID)
    views = _whole_number(body.get("views", 1), 1, MAX_VIEWS, VIEWS_INVALID)
    return NewShare(ciphertext, expires_in, views)


def _whole_number(value, low, high, message) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 12:
        value = int(value)  # form-encoded bodies (the console) send text
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(message)
    return value


def decode_ciphertext(text) -> bytes:
    if not isinstance(text, str) or not BASE64URL.fullmatch(text):
        raise InvalidRequest(CIPHERTEXT_INVALID)
    if len(text) * 3 // 4 > NONCE_BYTES + MAX_VALUE_BYTES + TAG_BYTES:
        raise InvalidRequest(VALUE_TOO_LARGE)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidRequest(CIPHERTEXT_INVALID) from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise InvalidRequest(CIPHERTEXT_INVALID)
    return raw


def encode_ciphertext(raw: bytes) -> str:
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def _link_hash(link_id: str) -> str | None:
    """The stored hash of a well-formed link id, or None (nothing to look up)."""
    if not isinstance(link_id, str) or not LINK_ID.fullmatch(link_id):
        return None
    return _hash(link_id)


def _hash(link_id: str) -> str:
    return hashlib.sha256(link_id.encode()).hexdigest()


# -- the operations --------------------------------------------------------------------------


def create_share(services, principal, request: NewShare, meta=None) -> CreatedShare:
    if principal is None or principal.kind not in ("user", "service"):
        raise InvalidRequest(CREATOR_INVALID)
    db = services.db
    link_id = random_tokens.token_urlsafe(32)
    moment = datetime.now(timezone.utc)
    created_at = format_time(moment)
    expires_at = format_time(moment + timedelta(seconds=request.expires_in))
    with db.transaction(bookkeeping=True):
        share_id = share_store.insert_share(
            db, organisation_id=principal.organisation_id,
            link_hash=_hash(link_id),
            creator_type=principal.kind, creator_id=principal.account_id,
            ciphertext=request.ciphertext, views=request.views, created_at=created_at,
            expires_at=expires_at)
        audit.record(db, principal, meta, "lockbox.create", "lockbox_share", share_id,
                     details={"views": request.views, "expiresAt": expires_at})
    return CreatedShare(share_id, link_id, created_at, expires_at, request.views)


def share_exists(services, link_id) -> bool:
    """Whether the link opens a live share now (counts nothing, writes nothing)."""
    link_hash = _link_hash(link_id)
    row = share_store.find_by_link(services.db, link_hash) if link_hash else None
    return (row is not None and row["ciphertext"] is not None and row["views_left"] > 0
            and row["expires_at"] > now())


def open_share(services, link_id, meta=None) -> OpenedShare:
    """Count one view and return the ciphertext; the last view deletes it. An expired share
    found here is purged. DoesNotExist(SHARE_GONE) for an unknown or gone share."""
    link_hash = _link_hash(link_id)
    db = services.db
    row = share_store.find_by_link(db, link_hash) if link_hash else None
    if row is None or row["ciphertext"] is None:
        raise DoesNotExist(SHARE_GONE)  # nothing to write: no transaction for a stranger
    opened = None
    stamp = now()
    with db.transaction(bookkeeping=True):
        row = share_store.get_share(db, row["id"])  # as it is now, under the write lock
        if row["ciphertext"] is not None and row["expires_at"] <= stamp:
            _end(db, row, "expired", stamp)
        elif row["ciphertext"] is not None:
            left = share_store.take_view(db, row["id"], stamp)
            if left is not None:
                opened = OpenedShare(bytes(row["ciphertext"]), left, row["expires_at"])
                _record_anonymous(db, row, meta, "lockbox.view", {"viewsLeft": left})
                if left == 0:
                    _end(db, row, "viewed", stamp)
    if opened is None:
        raise DoesNotExist(SHARE_GONE)
    return opened


def shares_of(services, principal) -> list:
    """The caller's shares, newest first: created, expires, views left, live or why gone."""
    return share_store.shares_of(services.db, principal.kind, principal.account_id)


def all_shares(services, principal) -> list:
    """Every share of the organisation (the admin command's list), newest first."""
    return share_store.all_shares(services.db, principal.organisation_id)


def state_of(row, moment=None) -> str:
    """``live``, or why a share is gone: ``viewed``, ``expired`` or ``revoked``."""
    if row["live"] and row["expires_at"] > (moment or now()):
        return "live"
    return row["end_reason"] or "expired"


def revoke_share(services, principal, share_id, meta=None) -> None:
    """Delete a live share's ciphertext now; only its creator (or the local operator, with
    the admin command) may. 404 for anyone else's."""
    db = services.db
    with db.transaction(bookkeeping=True):
        row = share_store.get_share(db, share_id) if isinstance(share_id, str) else None
        if row is None or (principal.kind != "operator" and (
                row["creator_type"] != principal.kind
                or row["creator_id"] != principal.account_id)):
            raise DoesNotExist(SHARE_NOT_FOUND)
        if share_store.end_share(db, share_id, "revoked", now()):
            audit.record(db, principal, meta, "lockbox.revoke", "lockbox_share", share_id)


def purge_expired(db) -> int:
    """Delete the ciphertext of every expired share; return how many."""
    stamp = now()
    with db.transaction(bookkeeping=True):
        if not db.take_turn("lockbox purge"):
            return 0  # another node is purging now
        rows = share_store.expired_shares(db, stamp)
        for row in rows:
            _end(db, row, "expired", stamp)
    if rows:
        log.info("lockbox: purged %d expired shares", len(rows))
    return len(rows)


def _end(db, row, reason, stamp):
    """Delete a live share's ciphertext, with a purge event saying why."""
    if share_store.end_share(db, row["id"], reason, stamp):
        _record_anonymous(db, row, SERVER_META, "lockbox.purge", {"reason": reason},
                          actor_type="server")


def _record_anonymous(db, row, meta, action, details, actor_type="anonymous"):
    """An event of no account: a visitor holding the link, or the server itself."""
    event = audit.event(None, action, "lockbox_share", resource_id=row["id"], details=details,
                        meta=meta)
    event.update(organisation_id=row["organisation_id"], actor_type=actor_type, actor_id=None)
    audit_store.insert_events(db, [event])
