"""Tokens of users and service accounts: minting, expiry, and revocation, audited.

A token's secret part exists only in the ``IssuedToken`` returned once; the store keeps its
hash. Interface: as ``apps`` (whose module docstring says it once).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from . import audit, contract, phase_crypto
from .apps import require
from .errors import DoesNotExist, InvalidRequest
from .store import NotFound, format_time, missing_as
from .store import accounts as account_store
from .textfields import validate_text_field as clean_text

EXPIRES_IN_INVALID = "'expires_in' must be a positive integer (seconds)."


@dataclass(frozen=True)
class IssuedToken:
    id: str
    name: str
    created_at: str
    expires_at: str | None
    token: str           # the full pss_* string, shown once
    bearer_token: str    # "<Type> <bearer>", the REST form


def check_may_manage_tokens(principal, sa):
    """Refuse, as Phase's ``_caller_can_manage_sa_tokens`` does, unless the caller sees
    everything (Owner, Admin, the local operator) or is the service account itself.

    A minted token carries the account's access, so anyone else is told the account does not
    exist (a Manager of one environment must not become an account that holds Production).
    """
    if principal.sees_everything or (not principal.is_user and principal.account_id == sa["id"]):
        return
    raise DoesNotExist("Service account not found.")


def expiry_from(expires_in: int | None = None, expires_at: datetime | None = None):
    if expires_in is not None:
        return format_time(datetime.now(timezone.utc) + timedelta(seconds=expires_in))
    if expires_at is not None:
        return format_time(expires_at)
    return None


def token_expiry(fields):
    """The stored expiry of a new token from ``expires_at`` or ``expires_in`` (or None)."""
    if "expiry" in fields:
        raise InvalidRequest(
            "Unknown field 'expiry'. Use 'expires_at' (ISO-8601 with timezone) or "
            "'expires_in' (positive integer seconds)."
        )
    expires_at, expires_in = fields.get("expires_at"), fields.get("expires_in")
    if expires_at is not None:  # wins over expires_in, as on Phase
        if not isinstance(expires_at, str):
            raise InvalidRequest(
                "'expires_at' must be an ISO-8601 datetime string with timezone "
                "(e.g. '2026-12-31T23:59:59Z')."
            )
        try:
            moment = datetime.fromisoformat(expires_at)
        except ValueError:
            raise InvalidRequest("'expires_at' is not a valid ISO-8601 datetime.") from None
        if moment.tzinfo is None:
            raise InvalidRequest(
                "'expires_at' must include a timezone offset (e.g. 'Z' or '+00:00')."
            )
        try:
            if moment <= datetime.now(timezone.utc):
                raise InvalidRequest("'expires_at' must be in the future.")
            return expiry_from(expires_at=moment)
        except OverflowError:
            raise InvalidRequest("'expires_at' is not a valid ISO-8601 datetime.") from None
    if expires_in is not None:
        if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
            raise InvalidRequest(EXPIRES_IN_INVALID)
        try:
            return expiry_from(expires_in=expires_in)
        except OverflowError:
            raise InvalidRequest(EXPIRES_IN_INVALID) from None
    return None


def mint_token(db, kind: str, owner_id: str, name: str, expires_at: str | None = None):
    """Mint a Phase token with real key material; only its hash is stored."""
    minted = phase_crypto.mint_token(kind)
    token_id = account_store.insert_token(
        db, kind, owner_id, name, phase_crypto.hash_bearer(minted.bearer),
        minted.public_key, minted.wrapped_key_share, expires_at,
    )
    row = account_store.get_token(db, token_id)
    return IssuedToken(
        id=token_id, name=name, created_at=row["created_at"], expires_at=expires_at,
        token=minted.token, bearer_token=f"{phase_crypto.bearer_type(kind)} {minted.bearer}",
    )


def issue_service_account_token(services, principal, sa, fields, meta):
    """Mint another token (``name``, ``expires_at`` or ``expires_in``) for a service account;
    return the IssuedToken (shown once)."""
    require(principal, "ServiceAccountTokens", "create", "service account tokens")
    check_may_manage_tokens(principal, sa)
    return _issue_token(services, principal, "service", sa["id"], fields, meta,
                        "service_account_token", {"service_account_id": sa["id"]})


def issue_user_token(services, principal, user, fields, meta):
    """Mint a personal access token (``name``, ``expires_at`` or ``expires_in``) for a user;
    return the IssuedToken (shown once)."""
    own = principal.kind == "user" and principal.account_id == user["id"]
    if not own:  # one's own token needs no permission over other members
        require(principal, "MemberPersonalAccessTokens", "create",
                "member personal access tokens")
    return _issue_token(services, principal, "user", user["id"], fields, meta, "user_token",
                        {"user_id": user["id"]})


def _issue_token(services, principal, kind, owner_id, fields, meta, resource_type, details):
    name = clean_text(fields.get("name"), "name", contract.NAME_MAX)
    expires_at = token_expiry(fields)
    db = services.db
    with db.transaction():
        token = mint_token(db, kind, owner_id, name, expires_at)
        audit.record(db, principal, meta, "create", resource_type, token.id,
                     details=details | {"name": name, "expires_at": expires_at})
    return token


def revoke_service_account_token(services, principal, sa, token_id, meta):
    """Revoke one of the service account's tokens; it stops working at once."""
    require(principal, "ServiceAccountTokens", "delete", "service account tokens")
    check_may_manage_tokens(principal, sa)
    db = services.db
    with db.transaction():
        with missing_as(DoesNotExist("Token not found.")):
            token = account_store.get_service_account_token(db, sa["id"], token_id)
        _revoke(db, principal, meta, token)


def revoke_token(services, principal, token_id, meta):
    """Revoke a live token of the organisation, of either kind, by id."""
    db = services.db
    with db.transaction():
        token = _live_token(db, principal.organisation_id, token_id)
        if token["kind"] == "user" and not (principal.kind == "user"
                                            and token["user_id"] == principal.account_id):
            # one's own token needs no permission over other members
            require(principal, "MemberPersonalAccessTokens", "delete",
                    "member personal access tokens")
        else:
            require(principal, "ServiceAccountTokens", "delete", "service account tokens")
            check_may_manage_tokens(principal, {"id": token["service_account_id"]})
        _revoke(db, principal, meta, token)


def _live_token(db, org_id, token_id):
    with missing_as(DoesNotExist(f"No active token with id '{token_id}'.")):
        token = account_store.get_token(db, token_id)
        if token["revoked_at"] is not None:
            raise NotFound("token")
        if token["user_id"]:
            account_store.get_user(db, org_id, token["user_id"])
        else:
            account_store.get_service_account(db, org_id, token["service_account_id"])
    return token


def _revoke(db, principal, meta, token):
    account_store.revoke_token(db, token["id"])
    if token["kind"] == "user":
        resource_type, owner = "user_token", {"user_id": token["user_id"]}
    else:
        resource_type = "service_account_token"
        owner = {"service_account_id": token["service_account_id"]}
    audit.record(db, principal, meta, "delete", resource_type, token["id"],
                 details=owner | {"name": token["name"]})
