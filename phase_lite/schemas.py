"""Marshmallow schemas of Phase's request and response bodies, for the OpenAPI document.

The secrets view parses bodies itself (Phase's own rules and messages, whatever the
Content-Type), so these schemas document the contract; they do not validate requests.
"""

from marshmallow import Schema, fields, validate

from . import contract, lockbox
from .history import EVENTS


class Error(Schema):
    """Every 4xx and 5xx body."""
    error = fields.String(required=True, metadata={"example": "Duplicate secret found"})


class Alive(Schema):
    """The root's answer."""
    message = fields.String(required=True)
    status = fields.String(required=True, metadata={"example": "ok"})


class Health(Schema):
    status = fields.String(required=True, metadata={"example": "alive"})
    version = fields.String(required=True)


class Message(Schema):
    message = fields.String(required=True, metadata={"example": "Deleted 1 secret"})


class Override(Schema):
    """The caller's personal override (personal access tokens only)."""
    id = fields.String(required=True)
    value = fields.String(required=True)
    isActive = fields.Boolean(required=True)
    createdAt = fields.String(required=True, metadata={"format": "date-time"})
    updatedAt = fields.String(required=True, metadata={"format": "date-time"})


class Secret(Schema):
    """A secret with its value decrypted and references resolved."""
    id = fields.String(required=True)
    key = fields.String(required=True, metadata={"example": "DB_HOST"})
    value = fields.String(required=True)
    comment = fields.String(required=True)
    tags = fields.List(fields.String(), required=True)
    override = fields.Nested(Override, allow_none=True, required=True)
    type = fields.String(required=True, validate=validate.OneOf(contract.SECRET_TYPES))
    lifecycle = fields.String(required=True, metadata={"example": "static"})
    path = fields.String(required=True, metadata={"example": "/"})
    keyDigest = fields.String(required=True)
    version = fields.Integer(required=True)
    createdAt = fields.String(required=True, metadata={"format": "date-time"})
    updatedAt = fields.String(required=True, metadata={"format": "date-time"})
    environment = fields.String(required=True)
    folder = fields.String(allow_none=True, required=True)


class OverrideInput(Schema):
    value = fields.String(required=True)
    isActive = fields.Boolean(required=True)


class NewSecret(Schema):
    key = fields.String(required=True, metadata={"description": "Stored upper-cased."})
    value = fields.String(required=True)
    comment = fields.String()
    path = fields.String(metadata={"description": "Default `/`; normalised."})
    tags = fields.List(fields.String(), metadata={"description": "Unknown names are created."})
    type = fields.String(validate=validate.OneOf(contract.SECRET_TYPES))
    override = fields.Nested(OverrideInput,
                             metadata={"description": "Personal access tokens only."})


class SecretChange(Schema):
    id = fields.String(required=True)
    key = fields.String()
    value = fields.String(metadata={"description": "Ignored for sealed secrets."})
    comment = fields.String()
    path = fields.String()
    tags = fields.List(fields.String(), metadata={"description": "Replaces every tag."})
    type = fields.String(validate=validate.OneOf(contract.SECRET_TYPES))
    override = fields.Nested(OverrideInput)


class CreateSecrets(Schema):
    secrets = fields.List(fields.Nested(NewSecret), required=True)


class UpdateSecrets(Schema):
    secrets = fields.List(fields.Nested(SecretChange), required=True)


class DeleteSecrets(Schema):
    secrets = fields.List(fields.String(), required=True, metadata={"description": "Secret ids."})


class SecretsQuery(Schema):
    """The environment a request is about (or the ``Environment`` header, or ``secret_id``)."""
    app_id = fields.String(metadata={"description": "App id (camelCase `appId` accepted)."})
    env = fields.String(metadata={"description": "Environment name, case-insensitive."})
    secret_id = fields.String(metadata={"description": "Use this secret's environment."})


class SecretsFilter(SecretsQuery):
    key = fields.String(metadata={"description": "Key, case-insensitive; every path."})
    path = fields.String(metadata={"description": "Exact normalised path, not recursive."})
    tags = fields.String(metadata={"description": "Comma-separated names; any of them."})
    dynamic = fields.String(metadata={"description": "Accepted; no dynamic secret exists."})
    include_dynamic = fields.String(metadata={"description": "Accepted; see `dynamic`."})
    lease = fields.String(metadata={"description": "Accepted; see `dynamic`."})
    lease_ttl = fields.Integer(metadata={"description": "Seconds (validated with `dynamic`)."})


# -- management API: apps, environments, roles, service accounts, tokens ----------------------


def _time(**kwargs):
    """A required ISO-8601 timestamp."""
    return fields.String(required=True, metadata={"format": "date-time"}, **kwargs)


def data_list(item):
    """The schema of a list answer, ``{"data": [item, ...]}``, named ``<item>List``."""
    return Schema.from_dict({"data": fields.List(fields.Nested(item), required=True)},
                            name=f"{item.__name__}List")


class Named(Schema):
    """An object's id and name: every management object starts with them."""
    id = fields.String(required=True)
    name = fields.String(required=True)


class RoleRef(Named):
    """A role, as a service account names it."""


class Environment(Named):
    envType = fields.String(required=True,
                            validate=validate.OneOf(("dev", "staging", "prod", "custom")))
    index = fields.Integer(required=True)
    createdAt = _time()
    updatedAt = _time()


EnvironmentList = data_list(Environment)


class App(Named):
    description = fields.String(required=True, allow_none=True)
    sseEnabled = fields.Boolean(required=True)
    createdAt = _time()
    updatedAt = _time()


class AppWithEnvironments(App):
    environments = fields.List(fields.Nested(Environment), required=True)


AppList = data_list(App)


class Role(Named):
    description = fields.String(required=True)
    color = fields.String(required=True)
    isDefault = fields.Boolean(required=True)
    createdAt = _time()


class RoleDetail(Role):
    permissions = fields.Dict(required=True, metadata={
        "description": "`{permissions: {...}, appPermissions: {...}, globalAccess: bool}`"})


RoleList = data_list(Role)


class RoleChange(Schema):
    name = fields.String(validate=validate.Length(max=contract.NAME_MAX))
    description = fields.String()
    color = fields.String()
    permissions = fields.Dict()


class ServiceAccount(Named):
    role = fields.Nested(RoleRef, required=True)
    createdAt = _time()
    updatedAt = _time()


ServiceAccountList = data_list(ServiceAccount)


class TokenInfo(Named):
    createdAt = _time()
    expiresAt = _time(allow_none=True)


class IssuedToken(TokenInfo):
    """A new token: shown once, never stored."""
    token = fields.String(required=True, metadata={"example": "pss_service:v2:..."})
    bearerToken = fields.String(required=True, metadata={"example": "ServiceAccount <hex>"})


class ServiceAccountCreated(ServiceAccount):
    initialToken = fields.Nested(IssuedToken, required=True)


class GrantedEnvironment(Named):
    envType = fields.String(required=True)


class GrantedApp(Named):
    environments = fields.List(fields.Nested(GrantedEnvironment), required=True)


class ServiceAccountDetail(ServiceAccount):
    tokens = fields.List(fields.Nested(TokenInfo), required=True,
                         metadata={"description": "Live tokens, newest first."})
    apps = fields.List(fields.Nested(GrantedApp), required=True)


class NewApp(Schema):
    name = fields.String(required=True, validate=validate.Length(max=contract.NAME_MAX))
    description = fields.String(validate=validate.Length(max=contract.DESCRIPTION_MAX))
    environments = fields.List(fields.String(), metadata={
        "description": "Custom environment names; default Development, Staging, Production."})


class AppChange(Schema):
    name = fields.String(validate=validate.Length(max=contract.NAME_MAX))
    description = fields.String(validate=validate.Length(max=contract.DESCRIPTION_MAX))


class EnvironmentName(Schema):
    name = fields.String(required=True,
                         validate=validate.Regexp(contract.ENV_NAME_REGEX))


class NewServiceAccount(Schema):
    name = fields.String(required=True, validate=validate.Length(max=contract.NAME_MAX))
    role_id = fields.String(required=True)
    token_name = fields.String(validate=validate.Length(max=contract.NAME_MAX),
                               metadata={"description": "Default `Default`."})
    team_id = fields.String(metadata={"description": "Teams are not available (403)."})


class ServiceAccountChange(Schema):
    name = fields.String(validate=validate.Length(max=contract.NAME_MAX))
    role_id = fields.String()


class AccessEntry(Schema):
    id = fields.String(required=True, metadata={"description": "App id."})
    environments = fields.List(fields.String(), required=True,
                               metadata={"description": "Environment ids of that app."})


class ServiceAccountAccess(Schema):
    apps = fields.List(fields.Nested(AccessEntry), required=True,
                       metadata={"description": "Replaces every grant of the account."})


class NewToken(Schema):
    name = fields.String(required=True, validate=validate.Length(max=contract.NAME_MAX))
    expires_at = fields.String(metadata={"format": "date-time",
                                         "description": "ISO-8601 with timezone, future."})
    expires_in = fields.Integer(validate=validate.Range(min=1),
                                metadata={"description": "Lifetime in seconds."})


# -- phase_lite extensions: secret history, restore, deleted secrets --------------------------

class Actor(Schema):
    """Who wrote a version (null when it was written before actors were recorded)."""
    type = fields.String(required=True,
                         validate=validate.OneOf(("user", "service", "operator", "cli")),
                         metadata={"description": "`user`, `service` (service account) or "
                                                  "`operator` (the admin command; `cli` before "
                                                  "operators were named)."})
    id = fields.String(required=True, allow_none=True)
    name = fields.String(required=True, allow_none=True,
                         metadata={"description": "The user's email, the service account's "
                                                  "name or the operator's login."})


class SecretVersion(Schema):
    """One version of a secret, as it was stored (references not resolved)."""
    version = fields.Integer(required=True)
    event = fields.String(required=True, validate=validate.OneOf(tuple(EVENTS.values())),
                          metadata={"description": "A deletion keeps the version it deleted."})
    key = fields.String(required=True)
    value = fields.String(required=True, allow_none=True, metadata={
        "description": "null in every version of a sealed secret, those from before it was "
                       "sealed included (the secrets API still returns its current value)."})
    comment = fields.String(required=True)
    tags = fields.List(fields.String(), required=True)
    path = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(contract.SECRET_TYPES))
    restoredFrom = fields.Integer(required=True, allow_none=True,
                                  metadata={"description": "The version a restore copied."})
    actor = fields.Nested(Actor, required=True, allow_none=True)
    createdAt = _time()


class SecretHistory(Schema):
    data = fields.List(fields.Nested(SecretVersion), required=True,
                       metadata={"description": "Newest first."})


class DeletedSecret(Schema):
    id = fields.String(required=True)
    key = fields.String(required=True)
    path = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(contract.SECRET_TYPES))
    version = fields.Integer(required=True)
    deletedAt = _time()
    deletedBy = fields.Nested(Actor, required=True, allow_none=True)


class DeletedSecrets(Schema):
    data = fields.List(fields.Nested(DeletedSecret), required=True,
                       metadata={"description": "Most recently deleted first."})


class Restore(Schema):
    version = fields.Integer(required=True, validate=validate.Range(min=1),
                             metadata={"description": "The version whose content to restore."})


# -- phase_lite extension: Lockbox shares ---------------------------------------------------

class NewLockboxShare(Schema):
    ciphertext = fields.String(required=True, metadata={
        "description": "base64url (no padding) of a 24-byte nonce, then the value encrypted "
                       "with XChaCha20-Poly1305 under a random 256-bit key the server never "
                       "sees (associated data `phase_lite/lockbox/v1`), then its 16-byte tag. "
                       f"The value is at most {lockbox.MAX_VALUE_BYTES} bytes."})
    expiresIn = fields.Integer(
        validate=validate.Range(min=lockbox.MIN_EXPIRY, max=lockbox.MAX_EXPIRY),
        metadata={"description": "Seconds until the share expires (default a day; at most "
                                 "90 days)."})
    views = fields.Integer(validate=validate.Range(min=1, max=lockbox.MAX_VIEWS),
                           metadata={"description": "How many views it allows (default 1)."})


class LockboxShareCreated(Schema):
    id = fields.String(required=True, metadata={"description": "The share's own id (lists, "
                                                              "revocation, audit log)."})
    link = fields.String(required=True, metadata={
        "example": "/lockbox/1bW4oHc0yJ3r2nE0c2nZ8Qk6dQm0v3XrQ1c9pVd5sYw",
        "description": "The share's path on this server, shown once; append `#` and the "
                       "base64url key to make the link."})
    url = fields.String(required=True, metadata={
        "example": "https://secrets.example.com/lockbox/"
                   "1bW4oHc0yJ3r2nE0c2nZ8Qk6dQm0v3XrQ1c9pVd5sYw",
        "description": "`link` made absolute: PHASE_LITE_PUBLIC_URL when set, else the "
                       "request's scheme and host; append `#` and the key."})
    createdAt = fields.String(required=True, metadata={"format": "date-time"})
    expiresAt = fields.String(required=True, metadata={"format": "date-time"})
    views = fields.Integer(required=True)


class LockboxShareOpened(Schema):
    ciphertext = fields.String(required=True, metadata={"description": "As it was sent."})
    viewsLeft = fields.Integer(required=True, metadata={
        "description": "0: this was the last view; the ciphertext is deleted."})
    expiresAt = fields.String(required=True, metadata={"format": "date-time"})


class LockboxShare(Schema):
    id = fields.String(required=True, metadata={"description": "The share's own id (not its "
                                                              "link's, which is never stored)."})
    createdAt = _time()
    expiresAt = _time()
    views = fields.Integer(required=True, metadata={"description": "The views it allowed."})
    viewsLeft = fields.Integer(required=True, metadata={"description": "0 once it is gone."})
    state = fields.String(required=True, validate=validate.OneOf(lockbox.STATES), metadata={
        "description": "`live`, or why it is gone: `viewed`, `expired` or `revoked`."})
    endedAt = fields.String(required=True, allow_none=True, metadata={
        "format": "date-time", "description": "When it went (an expired share: its expiry)."})


LockboxShareList = data_list(LockboxShare)
