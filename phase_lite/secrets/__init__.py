"""The domain rules for secrets: validation with Phase's messages, writes, versions, audit.

A package by concern: ``model`` (what callers pass and get back, Phase's view constants and
permission check), ``parsing`` (request bodies and arguments), ``snapshots`` (decrypted reads
and their caches), ``rendering`` (REST objects, references resolved, the cached GET body) and
``writes`` (transactional create/update/delete). Callers use the names exported here.

Interface for other callers (the REST API, the client protocol, the console)
-----------------------------------------------------------------------------
Every function takes ``services`` (``app.Services``), the caller (``auth.Principal``; None
means the local operator, as in a bulk import), the environment row that
``Authenticator.resolve_scope`` returned (it carries ``version``) and, for writes, ``meta``
(``audit.RequestMeta``). No Flask.
Errors are ``errors.PhaseError`` subclasses carrying Phase's exact messages.

- ``list_secrets(services, principal, env_row, *, key_digest=None, path=None, tags=None)``
  -> ``list[Secret]``: the live secrets, decrypted, values *not* reference-resolved, in
  Phase's order. Served from an in-memory snapshot keyed by (environment id, version).
- ``create_secrets(services, principal, env_row, entries: list[NewSecret], meta)``
  -> ``list[Secret]`` in entry order.
- ``update_secrets(services, principal, env_row, changes: list[SecretChange], meta)``
  -> ``list[Secret]`` in change order.
- ``delete_secrets(services, principal, env_row, ids: list[str], meta)`` -> number deleted.
  The three writes take ``expected_version`` (an ``If-Match``, see ``conditional``): 412 and
  nothing written unless the environment is still at that version.
- ``personal_overrides(services, principal, env_row, secret_ids)``
  -> ``{secret_id: PersonalOverride}`` (always empty for service accounts).
- ``render_secrets(services, principal, env_row, secrets)`` -> the REST JSON objects
  (references resolved, the caller's override attached); ``read_secrets`` is the REST GET
  (its encoded body and ETag, remembered for a database generation).
- ``require_permission(principal, env_row, method)``: Phase's view checks (unsupported method,
  environment required, the role's ``Secrets`` permission), 403 each. Every read and write
  above makes it itself (``render_secrets`` renders what one of them returned), so no door
  can leave it out; a request's pipeline also makes it early, for Phase's order of answers.
- ``parse_body``, ``parse_new_secrets``, ``parse_secret_changes``, ``parse_secret_ids``: the
  REST body rules and messages.

Each write is one transaction: everything is validated first (400/404/409 leave the data
exactly as it was), then rows, tags, folders, personal overrides, one ``secret_versions``
snapshot per secret, one environment bump and one audit event are written together.

``NewSecret.key`` is stored as given: the REST parser upper-cases it, a client-protocol caller
passes the key its client sent. ``key_digest`` None means "compute Phase's digest of
``key.upper()``"; pass the client's digest to store that instead. ``wire`` (``Wire``) carries
``ph:v1`` ciphertexts to store in the ``wire_*`` columns; without it those columns are set to
NULL whenever the field they mirror changes (to be filled lazily by the client protocol).
``Override.wire_value`` does the same for ``personal_secrets.wire_value``.
"""

from .model import (ACTIONS, DUPLICATE, ENVIRONMENT_REQUIRED, SEALED, NewSecret, Override,
                    PersonalOverride, Secret, SecretChange, Wire, require_permission,
                    secret_body)
from .parsing import (check_dynamic_arguments, parse_body, parse_new_secrets,
                      parse_secret_changes, parse_secret_ids, tag_names)
from .rendering import (ReferenceLookups, encode_secrets, new_body_cache,
                        read_secrets, render_secrets, unresolved_references)
from .snapshots import (Snapshot, SnapshotCache, environment_snapshot, list_secrets,
                        personal_overrides, select)
from .writes import create_secrets, delete_secrets, update_secrets

__all__ = [
    "ACTIONS", "DUPLICATE", "ENVIRONMENT_REQUIRED", "SEALED", "NewSecret", "Override",
    "PersonalOverride", "ReferenceLookups", "Secret", "SecretChange", "Snapshot",
    "SnapshotCache", "Wire", "check_dynamic_arguments", "create_secrets", "delete_secrets",
    "encode_secrets", "environment_snapshot", "list_secrets", "new_body_cache",
    "parse_body", "parse_new_secrets", "parse_secret_changes", "parse_secret_ids",
    "personal_overrides", "read_secrets", "render_secrets", "require_permission",
    "secret_body", "select", "tag_names", "unresolved_references", "update_secrets",
]
