"""Console sign-in through an OpenID provider: the authorization code flow with PKCE.

Authlib speaks the protocol: the authorization URL (PKCE S256, ``state``, ``nonce``), the code
exchange, and the ID token's signature (JWKS fetched once and kept; a token signed with an
unknown ``kid`` fetches the set again, once: the provider rotated its keys) and claims (issuer,
audience, expiry, nonce, ``at_hash``). This module decides what phase_lite accepts and who
that is: only a verified email (``email_verified``) names a member; an unknown one is refused,
or joins with the Developer role when ``PHASE_LITE_OIDC_AUTO_JOIN_ROLE`` says so (within the
allowed domains or groups). Every sign-in and refusal is an audit event naming the provider.

One sign-in is one random flow secret, kept only in the browser (an HttpOnly cookie scoped to
``/console/oidc/``, ten minutes): ``state``, ``nonce`` and the PKCE verifier are HMACs of it,
so nothing of a flow is stored on the server, any node can finish it, and a callback is only
accepted from the browser that started it. A code is single-use at the provider: a replayed
callback fails there. No Flask here: ``oidc_pages`` holds the routes.
"""

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass

import joserfc.errors
import requests
from authlib.integrations.base_client import (BaseApp, FrameworkIntegration, OAuth2Mixin,
                                              OAuthError, OpenIDMixin)
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken

from .. import audit
from ..store import NotFound
from ..store import accounts as account_store
from ..store import audit as audit_store
from . import sessions

log = logging.getLogger("phase_lite.console")

FLOW_LIFETIME = 600  # seconds from "Sign in with ..." to the callback
HTTP_TIMEOUT = 10  # seconds for each request to the provider
LEEWAY = 60  # seconds of clock difference allowed on the ID token's exp, nbf and iat
DISCOVERY_PATH = "/.well-known/openid-configuration"


class ProviderUnavailable(Exception):
    """The provider does not answer now (network error, timeout, 5xx): try again later."""


class ProviderMisconfigured(Exception):
    """The issuer answers with something that is not its OpenID configuration; the message
    says what (never a secret)."""


class SignInRefused(Exception):
    """A sign-in the console refuses: ``reason`` (a short code, for the audit log), the
    message for the page, and the email the provider sent, if any."""

    def __init__(self, reason: str, message: str, email: str | None = None):
        super().__init__(reason)
        self.reason, self.message, self.email = reason, message, email


RESTART = "Start again from the sign-in page."
REFUSALS = {
    "provider_error": "{name} did not sign you in. " + RESTART,
    "no_flow": "This sign-in expired or was not started in this browser. " + RESTART,
    "state": "This sign-in answer does not belong to the sign-in this browser started. "
             + RESTART,
    "issuer": "This sign-in answer comes from another provider. " + RESTART,
    "code": "{name} refused this sign-in's code (used already, or expired). " + RESTART,
    "id_token": "{name}'s ID token failed its checks ({detail}). " + RESTART,
    "no_email": "{name} sent no email address: the client must ask for the email scope.",
    "unverified": "{name} has not verified the email address {email}. Verify it there, "
                  "then sign in again.",
    "unknown": "{email} is not a member of this organisation. Ask an administrator to "
               "invite you, then sign in again.",
    "domain": "{email} is not a member of this organisation, and its domain may not join "
              "by itself. Ask an administrator to invite you.",
    "group": "{email} is not a member of this organisation, and none of your groups at "
             "{name} may join by itself. Ask an administrator to invite you.",
}


def refusal(provider_name, reason, email=None, detail=""):
    return SignInRefused(reason, REFUSALS[reason].format(name=provider_name, email=email,
                                                         detail=detail), email)


# -- one sign-in's flow ----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Flow:
    """One sign-in between "Sign in with ..." and the callback; lives in a cookie."""
    secret: str
    started: int
    next: str | None = None

    @classmethod
    def start(cls, next_path: str | None) -> "Flow":
        return cls(secrets.token_urlsafe(32), int(time.time()), next_path)

    def _derive(self, purpose: str) -> str:
        return _b64(hmac.new(self.secret.encode(), purpose.encode(), hashlib.sha256).digest())

    @property
    def state(self) -> str:
        return self._derive("phase_lite oidc state")

    @property
    def nonce(self) -> str:
        return self._derive("phase_lite oidc nonce")

    @property
    def code_verifier(self) -> str:  # 43 characters of base64url: RFC 7636's minimum length
        return self._derive("phase_lite oidc pkce")

    def cookie_value(self) -> str:
        return f"{self.secret}.{self.started}.{_b64((self.next or '').encode())}"

    @classmethod
    def from_cookie(cls, value: str | None, now: float | None = None) -> "Flow | None":
        """The flow a cookie holds, or None (absent, malformed, older than FLOW_LIFETIME)."""
        if not value or len(value) > 4096:
            return None
        try:
            secret, started, next_b64 = value.split(".", 2)
            started = int(started)
            next_path = base64.urlsafe_b64decode(next_b64 + "=" * (-len(next_b64) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        age = (time.time() if now is None else now) - started
        if len(secret) < 40 or not 0 <= age <= FLOW_LIFETIME:
            return None
        return cls(secret, started, next_path or None)


# -- the provider ----------------------------------------------------------------------------


class _ProviderApp(OAuth2Mixin, OpenIDMixin, BaseApp):
    """Authlib's OAuth 2 / OpenID client (the framework-neutral one; its Flask integration
    keeps flows in Flask's cookie session, which phase_lite has not)."""
    client_cls = OAuth2Session


class OpenIDProvider:
    """The configured provider: discovery on first use (kept once it succeeds), the flow's
    authorization URL, and the callback's checks."""

    def __init__(self, settings, *, timeout=HTTP_TIMEOUT, leeway=LEEWAY, clock=time.time):
        self.settings = settings
        self.timeout, self.leeway, self.clock = timeout, leeway, clock
        self._app = None
        self._lock = threading.Lock()
        self.status = "unknown"  # then "ok", "unavailable" (now) or "misconfigured"

    @property
    def name(self) -> str:
        return self.settings.display_name

    # discovery

    def discover(self) -> dict:
        """Fetch and check the provider's OpenID configuration; return it.

        Raise ProviderUnavailable when it does not answer now, ProviderMisconfigured when what
        answers is not the configured issuer's OpenID configuration."""
        issuer = self.settings.issuer
        url = issuer.rstrip("/") + DISCOVERY_PATH
        try:
            response = requests.get(url, timeout=self.timeout,
                                    headers={"Accept": "application/json"})
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"{url} does not answer ({exc.__class__.__name__})") \
                from None
        if response.status_code >= 500 or response.status_code == 429:
            raise ProviderUnavailable(f"{url} answers {response.status_code}")
        if response.status_code != 200:
            raise ProviderMisconfigured(f"{url} answers {response.status_code}: is this the "
                                        "issuer URL?")
        try:
            metadata = response.json()
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            raise ProviderMisconfigured(f"{url} is not an OpenID configuration (not JSON)")
        if str(metadata.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
            raise ProviderMisconfigured(f"{url} names another issuer: set the issuer exactly "
                                        "as the provider names itself")
        for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(metadata.get(endpoint), str):
                raise ProviderMisconfigured(f"{url} has no {endpoint}")
        methods = metadata.get("code_challenge_methods_supported")
        if methods is not None and "S256" not in methods:
            raise ProviderMisconfigured(f"{url}: the provider does not offer PKCE with S256")
        return metadata

    def app(self) -> _ProviderApp:
        """Authlib's client for this provider, discovering it first if need be."""
        with self._lock:
            if self._app is None:
                try:
                    metadata = self.discover()
                except ProviderUnavailable:
                    self.status = "unavailable"
                    raise
                except ProviderMisconfigured:
                    self.status = "misconfigured"
                    raise
                self.status = "ok"
                auth_methods = metadata.get("token_endpoint_auth_methods_supported") or []
                auth_method = ("client_secret_post" if "client_secret_basic" not in auth_methods
                               and "client_secret_post" in auth_methods
                               else "client_secret_basic")
                self._app = _ProviderApp(
                    FrameworkIntegration("phase_lite"), name="phase_lite",
                    client_id=self.settings.client_id,
                    client_secret=self.settings.client_secret,
                    client_kwargs={"scope": " ".join(self.settings.scopes),
                                   "code_challenge_method": "S256",
                                   "token_endpoint_auth_method": auth_method,
                                   "default_timeout": self.timeout},
                    **metadata)
            return self._app

    def available(self) -> bool:
        """Whether discovery has succeeded (or succeeds now)."""
        try:
            self.app()
        except (ProviderUnavailable, ProviderMisconfigured):
            return False
        return True

    # the flow

    def authorization_url(self, flow: Flow, redirect_uri: str) -> str:
        made = self.app().create_authorization_url(
            redirect_uri, state=flow.state, nonce=flow.nonce, code_verifier=flow.code_verifier)
        return made["url"]

    def finish(self, flow: Flow | None, args, redirect_uri: str) -> dict:
        """Check the callback's query ``args`` against ``flow``, exchange the code and check
        the ID token; return its claims (completed from the UserInfo endpoint when they lack
        the email). Raise SignInRefused."""
        if args.get("error"):
            raise refusal(self.name, "provider_error")
        if flow is None:
            raise refusal(self.name, "no_flow")
        if not hmac.compare_digest(args.get("state", "").encode(), flow.state.encode()):
            raise refusal(self.name, "state")
        app = self.app()
        issuer = app.server_metadata["issuer"]
        if "iss" in args and args["iss"] != issuer:  # RFC 9207: a mix-up of providers
            raise refusal(self.name, "issuer")
        try:
            token = app.fetch_access_token(redirect_uri, code=args.get("code", ""),
                                           code_verifier=flow.code_verifier)
        except OAuthError:
            raise refusal(self.name, "code") from None
        except requests.RequestException:
            raise ProviderUnavailable("the token endpoint does not answer") from None
        claims = self.check_id_token(token, flow.nonce)
        if "email" not in claims or "email_verified" not in claims:
            claims = {**self._userinfo(app, token, claims["sub"]), **claims}
        return claims

    def check_id_token(self, token: dict, nonce: str) -> dict:
        """The claims of the token response's ID token once its signature (the provider's
        JWKS), issuer, audience (this client), expiry and ``nonce`` are checked."""
        app = self.app()
        if not token.get("id_token"):
            raise refusal(self.name, "id_token", detail="none was sent")
        clock = self.clock

        class IDToken(CodeIDToken):
            def validate(self, now=None, leeway=0):
                super().validate(now=int(clock()) if now is None else now, leeway=leeway)

        options = {"iss": {"essential": True, "values": [app.server_metadata["issuer"]]},
                   "aud": {"essential": True, "values": [self.settings.client_id]},
                   "nonce": {"essential": True}}
        try:
            claims = app.parse_id_token(token, nonce, claims_options=options,
                                        claims_cls=IDToken, leeway=self.leeway)
        except joserfc.errors.JoseError as exc:
            raise refusal(self.name, "id_token", detail=_id_token_problem(exc)) from None
        except requests.RequestException:
            raise ProviderUnavailable("the JWKS endpoint does not answer") from None
        return dict(claims)

    def _userinfo(self, app, token, subject) -> dict:
        try:
            info = dict(app.userinfo(token=token))
        except (OAuthError, requests.RequestException, ValueError):
            return {}
        return info if info.get("sub") == subject else {}  # OpenID Connect Core 5.3.2


def _id_token_problem(exc) -> str:
    """What failed, in words that name a claim at most (never the token)."""
    if isinstance(exc, joserfc.errors.ExpiredTokenError):
        return "expired"
    if isinstance(exc, joserfc.errors.BadSignatureError):
        return "bad signature"
    if isinstance(exc, joserfc.errors.InvalidKeyIdError):
        return "signed with an unknown key"
    claim = getattr(exc, "claim", None)
    if claim in ("aud", "azp"):
        return "issued to another client"
    if claim:
        return f"wrong {claim}"
    return exc.__class__.__name__


def check_at_start(provider: OpenIDProvider) -> None:
    """Discover the provider at start: a misconfigured issuer raises ProviderMisconfigured
    (the server does not start); one that does not answer now is logged, the console says
    so, and discovery is tried again at the next sign-in (the API, and the admin command's
    rescue of an Owner, do not wait for the provider)."""
    try:
        provider.app()
    except ProviderUnavailable as exc:
        log.warning("OpenID provider %s unavailable at start (%s); console sign-in with it "
                    "is retried at each attempt", provider.name, exc)


# -- who signs in ----------------------------------------------------------------------------


def sign_in(db, session_settings, oidc_settings, provider_name: str, claims: dict,
            meta) -> str:
    """Open a console session for the member whose verified email the claims hold (or who
    joins now); return the cookie value. Raise SignInRefused (recorded by the caller)."""
    email = claims.get("email")
    email = email.strip() if isinstance(email, str) and "@" in email else None
    if email is None:
        raise refusal(provider_name, "no_email")
    if claims.get("email_verified") is not True:
        raise refusal(provider_name, "unverified", email)
    details = {"provider": provider_name, "via": "oidc"}
    org = account_store.get_organisation(db)
    if org is None:
        raise refusal(provider_name, "unknown", email)
    with db.transaction():
        try:
            user = account_store.get_user_by_email(db, org["id"], email)
        except NotFound:
            user_id = _join(db, org, oidc_settings, provider_name, email, claims, meta)
        else:
            user_id = user["id"]
        return sessions.open_session(db, session_settings, user_id, meta, details=details)


def _join(db, org, oidc_settings, provider_name, email, claims, meta) -> str:
    role_name = oidc_settings.auto_join_role
    if role_name is None:
        raise refusal(provider_name, "unknown", email)
    domains = oidc_settings.auto_join_domains
    if domains and email.rsplit("@", 1)[1].lower() not in domains:
        raise refusal(provider_name, "domain", email)
    wanted = oidc_settings.auto_join_groups
    if wanted:
        groups = claims.get(oidc_settings.groups_claim)
        groups = [groups] if isinstance(groups, str) else groups
        if not isinstance(groups, list) or not set(wanted) & {str(g) for g in groups}:
            raise refusal(provider_name, "group", email)
    role = account_store.get_role_by_name(db, org["id"], role_name)
    user_id = account_store.insert_user(db, org["id"], email, role["id"])
    event = audit.event(None, "create", "user", resource_id=user_id, meta=meta,
                        details={"role": role["name"], "provider": provider_name,
                                 "via": "oidc auto-join"})
    event.update(organisation_id=org["id"], actor_type="user", actor_id=user_id)
    audit_store.insert_events(db, [event])
    return user_id


def record_refusal(db, provider_name: str, refused: SignInRefused, meta) -> None:
    """An audit event of no account: a sign-in through the provider that was refused."""
    org = account_store.get_organisation(db)
    details = {"provider": provider_name, "reason": refused.reason}
    if refused.email:
        details["email"] = refused.email
    event = audit.event(None, "sign_in_refused", "console_session", details=details, meta=meta)
    event.update(organisation_id=org["id"] if org else None, actor_type="anonymous",
                 actor_id=None)
    with db.transaction():
        audit_store.insert_events(db, [event])
