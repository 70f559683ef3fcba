"""Console sign-in rules: passwords, server-side sessions, one-time links, sign-in throttling.

No Flask here: the console views and the admin command call these. Secrets handled here (the
password, the session id, a link's token) never reach the database, a log or an exception:
passwords are stored as Argon2id strings (libsodium's ``$argon2id$`` format, via PyNaCl, with
its interactive limits: about 64 MiB and two passes), session ids and link tokens are 256-bit
random values stored as their SHA-256, like API tokens.
"""

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import nacl.exceptions
import nacl.pwhash

from .. import audit
from ..auth import Principal
from ..errors import InvalidRequest, PermissionDenied
from ..store import NotFound, format_time, now
from ..store import accounts as account_store
from ..store import audit as audit_store
from ..store import sessions as session_store

PASSWORD_MIN = 10
PASSWORD_MAX = 1024
# What an unauthenticated form field may hold, checked before any other work (an email is at
# most 254 bytes, RFC 5321; a password of PASSWORD_MAX characters fits in 4 KiB of UTF-8).
EMAIL_MAX_BYTES = 254
PASSWORD_MAX_BYTES = 4 * PASSWORD_MAX
LINK_LIFETIME = timedelta(days=1)
TOUCH_GRANULARITY = timedelta(seconds=60)  # between last_seen_at writes of one session
PASSWORD_TOO_SHORT = f"The password must be at least {PASSWORD_MIN} characters long."
PASSWORD_TOO_LONG = f"The password must be at most {PASSWORD_MAX} characters long."
PASSWORDS_DIFFER = "The two passwords do not match."
WRONG_CREDENTIALS = "Wrong email or password."
WRONG_PASSWORD = "The current password is wrong."
LINK_GONE = "This link is invalid, used or expired. Ask an administrator for a new one."
FIELD_TOO_LONG = "The email or password is too long."

_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
# Unknown emails are checked against this, so a sign-in takes as long whether or not the
# account exists.
_DUMMY_HASH = None
_DUMMY_LOCK = threading.Lock()


# -- passwords -------------------------------------------------------------------------------


def check_password_rules(password: str, confirmation: str | None = None) -> None:
    if confirmation is not None and not hmac.compare_digest(password.encode(),
                                                            confirmation.encode()):
        raise InvalidRequest(PASSWORDS_DIFFER)
    if len(password) < PASSWORD_MIN:
        raise InvalidRequest(PASSWORD_TOO_SHORT)
    if len(password) > PASSWORD_MAX:
        raise InvalidRequest(PASSWORD_TOO_LONG)


def check_field_sizes(email: str = "", *passwords: str) -> None:
    """Refuse an email or password longer than any real one (InvalidRequest), before any
    hash, lookup or throttle counts it."""
    if len(email.encode()) > EMAIL_MAX_BYTES or any(
            len(password.encode()) > PASSWORD_MAX_BYTES for password in passwords):
        raise InvalidRequest(FIELD_TOO_LONG)


def hash_password(password: str) -> str:
    return nacl.pwhash.argon2id.str(password.encode(), opslimit=_OPSLIMIT,
                                    memlimit=_MEMLIMIT).decode()


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether the password matches; an absent hash is checked against a dummy, so both
    answers take the same time."""
    global _DUMMY_HASH
    if password_hash is None:
        with _DUMMY_LOCK:
            if _DUMMY_HASH is None:
                _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
        password_hash, known = _DUMMY_HASH, False
    else:
        known = True
    try:
        nacl.pwhash.verify(password_hash.encode(), password.encode())
    except (nacl.exceptions.InvalidkeyError, nacl.exceptions.CryptoError, ValueError):
        return False
    return known


def set_password(db, user_id: str, password: str, *, actor, meta, keep_session_id=None) -> None:
    """Set a user's password, end their other sessions (a password change signs out every
    browser but the one that made it) and void their one-time links (each was for choosing a
    password, and one is chosen). ``actor`` is the signed-in user, or the local operator for
    the admin command."""
    check_password_rules(password)
    password_hash = hash_password(password)
    with db.transaction():
        session_store.set_password_hash(db, user_id, password_hash)
        session_store.end_user_sessions(db, user_id, keep_session_id=keep_session_id)
        session_store.use_user_links(db, user_id)
        audit.record(db, actor, meta, "update", "user_password", user_id)


def change_password(db, principal, session_id, current: str, new: str, confirmation: str,
                    meta) -> None:
    """The signed-in user's own change: the current password is required."""
    check_field_sizes("", current)
    check_password_rules(new, confirmation)
    stored = session_store.get_password_hash(db, principal.account_id)
    if not verify_password(stored, current):
        with db.transaction():
            audit.record(db, principal, meta, "password_refused", "user", principal.account_id)
        raise PermissionDenied(WRONG_PASSWORD)
    set_password(db, principal.account_id, new, actor=principal, meta=meta,
                 keep_session_id=session_id)


# -- sessions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionSettings:
    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True)
class SignedIn:
    """A live console session: the id stored (never the cookie's value) and its principal."""
    session_id: str
    principal: Principal
    csrf_token: str


def _digest(secret_text: str) -> str:
    return hashlib.sha256(secret_text.encode()).hexdigest()


def csrf_token_of(cookie_value: str) -> str:
    """The CSRF token of a session: derived from its cookie value, so nothing is stored and a
    page of another session cannot carry it."""
    return hmac.new(cookie_value.encode(), b"phase_lite console csrf", "sha256").hexdigest()


def sign_in(db, settings: SessionSettings, email: str, password: str, meta) -> str:
    """Check the credentials and open a session; return the cookie value (shown once).

    Raise PermissionDenied(WRONG_CREDENTIALS) for an unknown email, a user without a password
    or a wrong password alike; a refusal for a known user is audited (``sign_in_refused``, by
    the actor ``visitor``: whoever typed it), one for an unknown email is not (the email typed
    may be a password).
    """
    check_field_sizes(email, password)
    org = account_store.get_organisation(db)
    user = None
    if org is not None and email:
        try:
            user = account_store.get_user_by_email(db, org["id"], email.strip())
        except NotFound:
            user = None
    stored = session_store.get_password_hash(db, user["id"]) if user is not None else None
    if not verify_password(stored, password) or user is None:
        if user is not None:
            refusal = audit.event(None, "sign_in_refused", "user", resource_id=user["id"],
                                  meta=meta)
            refusal.update(organisation_id=org["id"], actor_type="visitor", actor_id=None)
            with db.transaction():
                audit_store.insert_events(db, [refusal])
        raise PermissionDenied(WRONG_CREDENTIALS)
    return open_session(db, settings, user["id"], meta)


def open_session(db, settings: SessionSettings, user_id: str, meta, details=None) -> str:
    """Open a session for the user; return the cookie value. ``details`` go into the sign-in
    event (the OpenID provider that vouched for the user)."""
    cookie_value = secrets.token_urlsafe(32)
    expires_at = format_time(datetime.now(timezone.utc) + settings.absolute)
    with db.transaction():
        session_id = session_store.insert_session(db, user_id, _digest(cookie_value), expires_at,
                                                  meta.ip_address, meta.user_agent[:300])
        row = session_store.find_session_by_hash(db, _digest(cookie_value))
        audit.record(db, _principal(row), meta, "sign_in", "console_session", session_id,
                     details=details)
    return cookie_value


def authenticate(db, settings: SessionSettings, cookie_value: str | None) -> SignedIn | None:
    """The live session a cookie names, or None (unknown, ended, idle, expired, user gone)."""
    if not cookie_value or len(cookie_value) > 128:
        return None
    row = session_store.find_session_by_hash(db, _digest(cookie_value))
    if row is None or row["ended_at"] is not None or row["user_deleted_at"] is not None:
        return None
    moment = datetime.now(timezone.utc)
    stamp = format_time(moment)
    if row["expires_at"] <= stamp or row["last_seen_at"] <= format_time(moment - settings.idle):
        return None
    if row["last_seen_at"] <= format_time(moment - TOUCH_GRANULARITY):
        with db.transaction():
            session_store.touch_session(db, row["id"], stamp)
    return SignedIn(row["id"], _principal(row), csrf_token_of(cookie_value))


def _principal(row) -> Principal:
    """The signed-in user as the domain layer knows callers. ``token_id`` is the session's
    row id: audit events name the session, and per-caller caches keep sessions apart."""
    perms = json.loads(row["role_permissions"])
    return Principal(
        token_id=row["id"], token_name="console session", kind="user",
        account_id=row["user_id"], organisation_id=row["organisation_id"],
        role_id=row["role_id"], role_name=row["role_name"],
        permissions=perms.get("permissions", {}),
        app_permissions=perms.get("appPermissions", {}),
        global_access=bool(row["global_access"]), display_name=row["email"],
        public_key="", wrapped_key_share="",
    )


def sign_out(db, signed_in: SignedIn, meta) -> None:
    with db.transaction():
        session_store.end_session(db, signed_in.session_id)
        audit.record(db, signed_in.principal, meta, "sign_out", "console_session",
                     signed_in.session_id)


def sign_out_others(db, signed_in: SignedIn, meta) -> int:
    """End every other session of the user; return how many."""
    with db.transaction():
        ended = session_store.end_user_sessions(db, signed_in.principal.account_id,
                                                keep_session_id=signed_in.session_id)
        audit.record(db, signed_in.principal, meta, "sign_out_others", "console_session",
                     signed_in.session_id, details={"ended": ended})
    return ended


def live_sessions(db, user_id):
    return session_store.live_user_sessions(db, user_id, now())


# -- one-time links --------------------------------------------------------------------------


def issue_link(db, kind: str, user_id: str) -> str:
    """A one-time link token to choose a password (valid a day); only its hash is stored.
    The user's earlier links stop working: only the newest one printed or shown opens."""
    token = secrets.token_urlsafe(32)
    expires_at = format_time(datetime.now(timezone.utc) + LINK_LIFETIME)
    with db.transaction():
        session_store.use_user_links(db, user_id)
        session_store.insert_link(db, kind, user_id, _digest(token), expires_at)
    return token


def link_holder(db, token: str):
    """The link row (with the user's email) of a usable link, or None."""
    if not token or len(token) > 128:
        return None
    row = session_store.find_link_by_hash(db, _digest(token))
    if (row is None or row["used_at"] is not None or row["user_deleted_at"] is not None
            or row["expires_at"] <= now()):
        return None
    return row


def use_link(db, settings: SessionSettings, token: str, password: str, confirmation: str,
             meta) -> str:
    """Choose a password with a one-time link and sign in; return the session cookie value."""
    check_field_sizes("", password, confirmation)
    check_password_rules(password, confirmation)
    password_hash = hash_password(password)
    with db.transaction():
        row = link_holder(db, token)
        if row is None or not session_store.use_link(db, row["id"]):
            raise PermissionDenied(LINK_GONE)
        session_store.set_password_hash(db, row["user_id"], password_hash)
        session_store.end_user_sessions(db, row["user_id"])
        session_store.use_user_links(db, row["user_id"])  # any other link dies with it
        cookie_value = open_session(db, settings, row["user_id"], meta)
    return cookie_value


# -- sign-in throttling ----------------------------------------------------------------------


def make_sign_in_throttle(config, db):
    """The sign-in throttle ``config`` asks for: per node in memory, or shared by every node
    through the database with ``PHASE_LITE_RATE_LIMIT_SCOPE=cluster``, like the API's."""
    if config.rate_limit_scope == "cluster":
        return SharedSignInThrottle(db)
    return SignInThrottle()


def email_key(email: str) -> str:
    """What a throttle counts an email as: the SHA-256 of its trimmed, lower-cased form, of
    one size whatever was typed (and never the text itself: people type passwords there)."""
    return hashlib.sha256((email or "").strip().lower().encode()).hexdigest()


class SignInThrottle:
    """At most ``per_address`` attempts per client address and ``per_email`` per email (by
    ``email_key``) in a sliding ``window`` (seconds); in memory, like the API's rate limit.
    A password change counts against its user's email, as a sign-in does. An attempt is
    counted before the password is checked (so parallel guesses cannot outrun the limit), and
    ``forgive`` takes back the attempts that succeeded: only failures lock anyone out."""

    def __init__(self, per_address=20, per_email=10, window=900.0, clock=time.monotonic):
        self.limits = {"address": per_address, "email": per_email}
        self.window = window
        self._clock = clock
        self._history: dict[tuple, deque] = {}
        self._lock = threading.Lock()

    def attempt(self, address: str | None, email: str) -> int:
        """Count an attempt; return 0, or the seconds to wait when either limit is reached
        (a refused attempt is not counted)."""
        keys = [("address", address or "unknown"), ("email", email_key(email))]
        with self._lock:
            moment = self._clock()
            waits = []
            for key in keys:
                history = self._history.setdefault(key, deque())
                while history and history[0] <= moment - self.window:
                    history.popleft()
                if len(history) >= self.limits[key[0]]:
                    waits.append(int(self.window - (moment - history[0])) + 1)
            if waits:
                return max(waits)
            for key in keys:
                self._history[key].append(moment)
            if len(self._history) > 100_000:  # idle counters are dropped now and then
                self._history = {k: h for k, h in self._history.items() if h}
        return 0

    def forgive(self, address: str | None, email: str) -> None:
        """Take back one counted attempt (the latest) that turned out right."""
        with self._lock:
            for key in (("address", address or "unknown"), ("email", email_key(email))):
                history = self._history.get(key)
                if history:
                    history.pop()


class SharedSignInThrottle:
    """``SignInThrottle``'s limits counted in PostgreSQL for every node at once (the API's
    cluster-wide windows, keys starting with ``sign-in:``; an email only as its SHA-256, since
    people type passwords into the email field). The address is counted first: an attempt
    refused for its email has still been counted against its address."""

    SWEEP_EVERY = 256  # attempts between deletions of idle windows

    def __init__(self, db, per_address=20, per_email=10, window=900.0):
        self.db = db
        self.limits = {"address": per_address, "email": per_email}
        self.window = window
        self._lock = threading.Lock()
        self._since_sweep = 0

    def attempt(self, address: str | None, email: str) -> int:
        """Count an attempt; return 0, or the seconds to wait when either limit is reached."""
        keys = [("address", address or "unknown"), ("email", email_key(email))]
        for kind, value in keys:
            refused, history, moment = self.db.count_request(
                f"sign-in:{kind}:{value}", self.limits[kind], self.window)
            if refused:
                return int(self.window - (moment - history[0])) + 1
        with self._lock:
            self._since_sweep += 1
            sweep = self._since_sweep >= self.SWEEP_EVERY
            if sweep:
                self._since_sweep = 0
        if sweep:
            self.db.forget_idle_requests(self.window, "sign-in:")
        return 0

    def forgive(self, address: str | None, email: str) -> None:
        """Take back one counted attempt (the latest) that turned out right."""
        for kind, value in (("address", address or "unknown"), ("email", email_key(email))):
            self.db.forget_last_request(f"sign-in:{kind}:{value}")
