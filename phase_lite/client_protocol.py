"""The Phase client protocol: what the Phase CLI and SDKs read from and send to ``/secrets/``.

Phase's clients do their own cryptography. A token carries half of a ``crypto_kx`` private key;
``/secrets/tokens/`` returns the other half wrapped (``wrapped_key_share``) and, for every
environment the token may use, the environment seed and salt encrypted to the token's public
key. With them the client derives each environment's key pair and keyDigest salt, reads secrets
as ``ph:v1`` ciphertexts to the environment's public key and sends its writes the same way.

phase_lite stores secrets once, encrypted at rest under the app's data key, and translates at
this edge: ciphertexts from clients are decrypted with the environment's private key and go
through the same domain rules as ``/v1/secrets/`` (``phase_lite.secrets``), keeping the client's
ciphertexts as the row's ``wire_*`` columns (sealed under the data key like every stored field,
and checked on every read); rows written over REST get their ciphertexts made
on the first client read. Both sides therefore see the same ids, versions, digests and values.
"""

import dataclasses
import re
import threading
import uuid
from collections import OrderedDict

import orjson

from . import audit, phase_crypto
from . import secrets as secret_rules
from .caches import kept_bytes
from .errors import AuthenticationFailed, DoesNotExist, InvalidRequest, PermissionDenied
from .paths import normalize_path
from .store import accounts as account_store
from .store import apps as app_store
from .store import render_time
from .store import secrets as secret_store

KEY_CACHE_SIZE = 4096
INVALID_CIPHERTEXT = "Invalid ciphertext format"
UNREADABLE_CIPHERTEXT = "A ciphertext does not open with this environment's key"
DIGEST_MISMATCH = "keyDigest does not match the key (keys are stored upper-cased)"
DELETE_IDS_REQUIRED = "'secrets' must be a non-empty list of secret IDs."
SECRET_FIELDS = ("key", "value", "comment")
_ENV_KEY_NAMESPACE = uuid.UUID("9a4f3c2e-55b1-4c1e-9f6a-2d0f1e7b8c31")


class WrappedKeyCache:
    """Environment seeds and salts already encrypted to a token's key, least recently used out.

    Each ``ph:v1`` encryption costs a key exchange, and clients fetch ``/secrets/tokens/``
    before every command (the Python SDK before every decryption), so the ciphertexts are kept
    per (token, environment) and dropped when the environment's key pair changes.
    """

    def __init__(self, size: int = KEY_CACHE_SIZE):
        self.size = size
        self._entries = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token_id, env_keys, token_public_key) -> tuple[str, str]:
        """Return (wrapped_seed, wrapped_salt) of an environment for a token."""
        slot = (token_id, env_keys.environment_id)
        with self._lock:
            entry = self._entries.get(slot)
            if entry is not None and entry[0] == env_keys.public_key:
                self._entries.move_to_end(slot)
                return entry[1], entry[2]
        wrapped_seed = phase_crypto.encrypt_asymmetric(env_keys.seed, token_public_key)
        wrapped_salt = phase_crypto.encrypt_asymmetric(env_keys.salt, token_public_key)
        with self._lock:
            self._entries[slot] = (env_keys.public_key, wrapped_seed, wrapped_salt)
            self._entries.move_to_end(slot)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return wrapped_seed, wrapped_salt

    def __len__(self):
        return len(self._entries)


class ClientProtocol:
    """Serve Phase's client endpoints from the shared store (one per app)."""

    def __init__(self, services):
        self.services = services
        self.db = services.db
        self.vault = services.vault
        self.auth = services.auth
        self.wrapped_keys = WrappedKeyCache()
        self.bodies = services.wire_answers

    # -- /secrets/tokens/ ------------------------------------------------------------------

    def authenticate_for_keys(self, authorization):
        """Authenticate a key-share request; Phase refuses these with 403, not 401."""
        try:
            return self.auth.authenticate(authorization)
        except (AuthenticationFailed, DoesNotExist) as exc:
            raise PermissionDenied(exc.message) from None

    def token_keys(self, principal) -> dict:
        """The token's wrapped key share, organisation, and every environment key it may use.

        Environments come app by app, each app's in index order (clients pick environments by
        substring match in list order). The response is snake_case whatever the client asks.
        """
        org_id = principal.organisation_id
        allowed = None
        if not (principal.is_user and principal.global_access):
            allowed = self.auth.accessible_environment_ids(principal)
        apps = {}
        for env in app_store.list_org_environments(self.db, org_id):
            if allowed is not None and env["id"] not in allowed:
                continue
            app = apps.get(env["app_id"])
            if app is None:
                app = apps[env["app_id"]] = {
                    "id": env["app_id"],
                    "name": env["app_name"],
                    "encryption": "SSE",
                    "environment_keys": [],
                }
            app["environment_keys"].append(self._environment_key(principal, env))
        account_field = "user_id" if principal.is_user else "account_id"
        return {
            "wrapped_key_share": principal.wrapped_key_share,
            account_field: principal.account_id,
            "offline_enabled": False,
            "apps": list(apps.values()),
            "organisation": {
                "id": org_id,
                "name": account_store.organisation_name(self.db, org_id),
            },
        }

    def _environment_key(self, principal, env) -> dict:
        keys = self.vault.environment_keys(env)
        wrapped_seed, wrapped_salt = self.wrapped_keys.get(
            principal.token_id, keys, principal.public_key
        )
        return {
            "id": str(uuid.uuid5(_ENV_KEY_NAMESPACE, f"{principal.account_id}:{env['id']}")),
            "environment": {
                "id": env["id"],
                "name": env["name"],
                "env_type": env["env_type"],
                "index": env["sort_index"],
                "created_at": render_time(env["created_at"]),
                "updated_at": render_time(env["updated_at"]),
            },
            "paths": None,
            "identity_key": keys.public_key,
            "wrapped_seed": wrapped_seed,
            "wrapped_salt": wrapped_salt,
            "created_at": render_time(env["created_at"]),
            "updated_at": render_time(env["created_at"]),
            "deleted_at": None,
            "user": principal.account_id if principal.is_user else None,
            "service_account": None if principal.is_user else principal.account_id,
        }

    # -- /secrets/ GET ---------------------------------------------------------------------

    def read_secrets(self, principal, env, *, key_digest=None, path=None, camel=False,
                     meta=None, generation=None) -> bytes:
        """The JSON body of the environment's live secrets as ``ph:v1`` rows, filtered as
        Phase filters.

        An empty ``key_digest`` or ``path`` means no filter (the CLI always sends the digest
        header, often empty); a path is normalised and matched exactly. Rows written over REST
        get their ciphertexts made here and stored back, a cache fill that a busy database may
        skip. Keys are snake_case unless the client asked for camelCase. A read that returns
        secrets is audited as one event naming them, as ``/v1/secrets/`` reads are. The body
        is remembered per token for the database ``generation`` (as ``/v1/secrets/`` bodies).
        """
        secret_rules.require_permission(principal, env, "GET")
        if generation is None:
            generation = self.db.generation()
        slot = (env["id"], env["version"], principal.token_id, key_digest or None,
                path or None, camel)
        found = self.bodies.get(generation, slot)
        if found is None:
            items = self._wire_items(principal, env, key_digest or None,
                                     normalize_path(path) if path else None)
            details = audit.read_details(item["id"] for item in items)
            if camel:
                items = [_camel_case(item) for item in items]
            found = (kept_bytes(orjson.dumps(items)), details)
            self.bodies.put(generation, slot, found)
        body, details = found
        if details["secrets"]:
            audit.record_read(self.services.read_log, principal, env, details, meta)
        return body

    def _wire_items(self, principal, env, key_digest, path) -> list[dict]:
        """The rows of the environment's snapshot (the one REST reads, its stored fields
        opened: a changed ciphertext is detected here as there, never served), with their
        ciphertexts: known to the snapshot, else stored, else made now and stored back."""
        snapshot = secret_rules.environment_snapshot(self.services, env)
        selected = secret_rules.select(snapshot, key_digest, path, None)
        if not selected:
            return []
        sealer = _Sealer(self.vault, env)
        wires, fills = snapshot.wire, []
        missing = [s for s in selected if wires.get(s.id, (None,))[0] != s.version]
        if missing:
            rows = secret_store.secrets_by_id(self.db, env["id"], [s.id for s in missing])
            for secret in missing:
                wire, made = self._secret_wire(sealer, secret, rows.get(secret.id))
                if made:
                    fills.append((secret.id, secret.version, *(
                        sealer.seal_wire("secrets", secret.id, f"wire_{field}", ciphertext)
                        for field, ciphertext in zip(SECRET_FIELDS, wire[1:]))))
                wires[secret.id] = wire
        overrides = {}
        if principal.is_user:
            overrides = secret_store.personal_secrets(self.db, principal.account_id,
                                                      [s.id for s in selected])
        items, override_fills = [], []
        for secret in selected:
            override = overrides.get(secret.id)
            if override is not None:
                text = sealer.open("personal_secrets", override["id"], "value",
                                   override["value_enc"])
                override_wire = sealer.unseal_wire("personal_secrets", override["id"],
                                                   "wire_value", override["wire_value"])
                if override_wire is None:
                    override_wire = sealer.seal(text)
                    override_fills.append((override["id"], override["updated_at"],
                                           sealer.seal_wire("personal_secrets", override["id"],
                                                            "wire_value", override_wire)))
                override = {
                    "id": override["id"],
                    "value": override_wire,
                    "is_active": bool(override["is_active"]),
                    "created_at": render_time(override["created_at"]),
                    "updated_at": render_time(override["updated_at"]),
                }
            items.append(_wire_row(secret, wires[secret.id], override))
        if fills or override_fills:
            secret_store.fill_secret_wire(self.db, fills, override_fills)
        return items

    @staticmethod
    def _secret_wire(sealer, secret, row):
        """(version, key, value, comment) ciphertexts of a snapshot's secret: the stored ones
        when ``row`` is that version, the others made now; and whether any was made."""
        current = row is not None and row["version"] == secret.version
        wire, made = [secret.version], False
        for index, (field, text) in enumerate(
                zip(SECRET_FIELDS, (secret.key, secret.value, secret.comment))):
            stored = None
            if current:
                stored = sealer.unseal_wire("secrets", secret.id, f"wire_{field}",
                                            row[f"wire_{field}"])
            if stored is None:
                made = True
                stored = sealer.seal(text, empty_as_blank=index == 2)
            wire.append(stored)
        return tuple(wire), made

    # -- /secrets/ POST, PUT, DELETE -------------------------------------------------------

    def create_secrets(self, principal, env, body, meta):
        """Create the secrets of a client POST through the domain rules of ``/v1/secrets/``."""
        keys = self.vault.environment_keys(env)
        opened = [_open_entry(keys, entry) for entry in _entries(body)]
        parsed = secret_rules.parse_new_secrets({"secrets": [entry.plain for entry in opened]})
        entries = [_with_wire(keys, new, entry) for new, entry in zip(parsed, opened)]
        secret_rules.create_secrets(self.services, principal, env, entries, meta)

    def update_secrets(self, principal, env, body, meta):
        """Apply the partial updates of a client PUT through the domain rules."""
        keys = self.vault.environment_keys(env)
        opened = [_open_entry(keys, entry) for entry in _entries(body)]
        parsed = secret_rules.parse_secret_changes(
            {"secrets": [entry.plain for entry in opened]})
        changes = [_with_wire(keys, change, entry) for change, entry in zip(parsed, opened)]
        secret_rules.update_secrets(self.services, principal, env, changes, meta)

    def delete_secrets(self, principal, env, body, meta):
        """Delete the listed secrets of this environment; ids that match nothing are ignored,
        as Phase's client endpoint ignores them."""
        ids = body.get("secrets")
        if not isinstance(ids, list):
            raise InvalidRequest(DELETE_IDS_REQUIRED)
        wanted = list(dict.fromkeys(str(secret_id) for secret_id in ids))
        live = secret_store.secrets_by_id(self.db, env["id"], wanted)
        found = [secret_id for secret_id in wanted if secret_id in live]
        if found:
            secret_rules.delete_secrets(self.services, principal, env, found, meta)


class _Sealer:
    """Stored fields of one environment for the clients: opened with the app's data key,
    encrypted to the environment's public key; and the stored ``wire_*`` forms of them, which
    are themselves sealed under the data key (bound to table, row and column) so that whoever
    can write the database cannot forge a value the clients would trust."""

    def __init__(self, vault, env):
        self.vault = vault
        self.env = env
        self.public_key = vault.environment_keys(env).public_key
        self._data_key = None

    @property
    def data_key(self):
        if self._data_key is None:
            self._data_key = self.vault.data_key(self.env["app_id"])
        return self._data_key

    def open(self, table, row_id, field, blob) -> str:
        return self.vault.decrypt(self.data_key, table, row_id, field, blob)

    def seal(self, text, *, empty_as_blank=False) -> str:
        if empty_as_blank and not text:
            return ""  # Phase stores "no comment" as an empty string, not a ciphertext
        return phase_crypto.encrypt_asymmetric(text, self.public_key)

    def unseal_wire(self, table, row_id, column, blob) -> str | None:
        return None if blob is None else self.open(table, row_id, column, blob)

    def seal_wire(self, table, row_id, column, ciphertext) -> bytes:
        return self.vault.encrypt(self.data_key, table, row_id, column, ciphertext)


def _wire_row(secret, wire, override) -> dict:
    """A secret as Phase's client endpoint renders it (snake_case, Phase's field order);
    ``wire`` is (version, key, value, comment) ciphertexts."""
    return {
        "id": secret.id,
        "environment": secret.environment_id,
        "folder": secret.folder_id,
        "path": secret.path,
        "key": wire[1],
        "key_digest": secret.key_digest,
        "value": wire[2],
        "version": secret.version,
        "tags": list(secret.tags),
        "comment": wire[3],
        "type": secret.type,
        "created_at": render_time(secret.created_at),
        "updated_at": render_time(secret.updated_at),
        "override": override,
        "lifecycle": "static",
    }


_SNAKE = re.compile(r"_([a-z0-9])")


def _camel_case(item):
    """Rename keys as Phase's camelCase renderer does (``key_digest`` -> ``keyDigest``)."""
    if isinstance(item, dict):
        return {_SNAKE.sub(lambda m: m.group(1).upper(), name): _camel_case(value)
                for name, value in item.items()}
    if isinstance(item, list):
        return [_camel_case(value) for value in item]
    return item


@dataclasses.dataclass
class _Opened:
    """A client entry with its ciphertexts opened: the plaintext twin for the REST parser,
    the ciphertexts to keep, and the digest the client computed."""
    plain: object
    wire: dict
    override_wire: str | None = None
    key_digest: object = None


def _entries(body):
    entries = body.get("secrets")
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest("'secrets' must be a non-empty list.")
    return entries


def _open_entry(keys, entry) -> _Opened:
    """Check and decrypt the ph:v1 fields of one entry (``""`` passes, as on Phase)."""
    if not isinstance(entry, dict):
        return _Opened(entry, {})
    plain, wire = dict(entry), {}
    for field in SECRET_FIELDS:
        text = entry.get(field)
        if isinstance(text, str) and text:
            plain[field] = _open(keys, text)
            wire[field] = text
        elif field == "comment" and text == "":
            wire[field] = ""
    override_wire = None
    override = entry.get("override")
    if isinstance(override, dict) and isinstance(override.get("value"), str) and \
            override["value"]:
        override_wire = override["value"]
        plain["override"] = dict(override, value=_open(keys, override_wire))
    return _Opened(plain, wire, override_wire, entry.get("keyDigest"))


def _open(keys, ciphertext) -> str:
    if not phase_crypto.is_ph_v1(ciphertext):
        raise InvalidRequest(INVALID_CIPHERTEXT)
    try:
        return phase_crypto.decrypt_asymmetric(ciphertext, keys.private_key, keys.public_key)
    except phase_crypto.CryptoError:
        raise InvalidRequest(UNREADABLE_CIPHERTEXT) from None


def _with_wire(keys, parsed, opened: _Opened):
    """Attach the client's ciphertexts to a parsed NewSecret/SecretChange.

    The client's keyDigest must be the server's (the digest of the upper-cased key, which is
    how keys are stored); otherwise the secret would be invisible to every other client. The
    key ciphertext is kept only when it already says the upper-cased key.
    """
    wire = dict(opened.wire)
    if parsed.key is not None:
        if opened.key_digest is not None and opened.key_digest != keys.digest(parsed.key):
            raise InvalidRequest(DIGEST_MISMATCH)
        if opened.plain.get("key") != parsed.key:
            wire.pop("key", None)
    override = parsed.override
    if override is not None and opened.override_wire is not None:
        override = dataclasses.replace(override, wire_value=opened.override_wire)
    return dataclasses.replace(
        parsed, override=override,
        wire=secret_rules.Wire(wire.get("key"), wire.get("value"), wire.get("comment")),
    )
