"""Envelope encryption at rest: master key -> per-app data key -> secret fields.

A leaf module: bytes in, bytes out, stdlib and ``cryptography``'s AESGCM only. Every failure to
open or parse a ciphertext raises :class:`KeyringError`, which carries no message, key material
or plaintext (exception text ends up in logs). Misuse by the caller (a key of the wrong length,
``|`` in an AAD part) raises ``ValueError``.

Algorithms and sizes
--------------------
All encryption is AES-256-GCM (NIST SP 800-38D): 32-byte keys, 12-byte (96-bit) nonces, 16-byte
tags. Every encryption draws a fresh nonce from ``os.urandom(12)``; no nonce is ever counted,
derived or reused. NIST bounds a key used with random 96-bit nonces to 2^32 encryptions; with one
data key per app (a few field encryptions per secret write) and a master key that encrypts once
per app per rotation, use stays many orders of magnitude below that bound.

- **Master key**: 32 random bytes, stored outside the database as standard padded base64
  (:func:`encode_master_key` / :func:`parse_master_key`). Its **key id** is the first 8 bytes of
  ``SHA-256(b"phase_lite master key id\\x00" + key)``, shown as 16 hex characters: stable,
  domain-separated, not reversible.
- **Data key**: 32 random bytes per app, stored only wrapped by a master key.

Stored formats (all integers are single bytes; ``||`` is concatenation)
-----------------------------------------------------------------------
Wrapped data key, 69 bytes::

    0x01 || key_id (8, raw) || nonce (12) || AES-256-GCM(master_key, nonce, data_key, aad) (32+16)
    aad = b"phase_lite/v1|data-key|" || UTF-8(app_id)

Master-key check blob, written to the database at init, 1+8+12+len(constant)+16 bytes::

    0x01 || key_id (8, raw) || nonce (12) || AES-256-GCM(master_key, nonce, constant, aad)
    constant = b"phase_lite/v1 master key check"
    aad = b"phase_lite/v1|master-key-check"

Field blob, 1+12+len(plaintext)+16 bytes::

    0x01 || nonce (12) || AES-256-GCM(data_key, nonce, plaintext, aad)
    aad = field_aad(table, row_id, field)
        = b"phase_lite/v1|" || UTF-8(table) || b"|" || UTF-8(row_id) || b"|" || UTF-8(field)

The leading byte is the format version; anything but 0x01 is rejected. The key id in a wrapped
key is not authenticated: it only selects the master key, and a wrong key fails the tag check.

What the associated data binds
------------------------------
A field ciphertext opens only under the (table, row id, field) it was written for, so a
ciphertext copied to another row, column or table fails to open. A wrapped data key opens only
for its app id, so one app's wrapped key cannot be pasted onto another app. ``|`` is rejected in
every AAD part, so each AAD has exactly one parse and the three kinds (field: four ``|``,
data key: two, check: one) can never collide.

Rotation
--------
- **rotate-master**: generate a new master key and load ``Keyring([new, old])``. For every app,
  ``wrap_data_key(unwrap_data_key(wrapped, app), app)`` re-wraps the same data key under the new
  current key (fields are untouched); write a new check blob. When :meth:`Keyring.wrapped_key_id`
  reports the new id for every app, drop the old key.
- **rotate-app**: draw a new data key with :meth:`Keyring.new_data_key`, decrypt every field of
  that app with the old data key and encrypt it with the new one, and store the new wrapped key,
  all in one transaction.
"""

import base64
import functools
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyringError(Exception):
    """A ciphertext or key failed to open or parse. Never carries key material or plaintext."""


MASTER_KEY_BYTES = 32
DATA_KEY_BYTES = 32
VERSION = b"\x01"
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_ID_BYTES = 8

_KEY_ID_DOMAIN = b"phase_lite master key id\x00"
_AAD_PREFIX = "phase_lite/v1|"
_DATA_KEY_AAD_PREFIX = b"phase_lite/v1|data-key|"
_CHECK_AAD = b"phase_lite/v1|master-key-check"
_CHECK_CONSTANT = b"phase_lite/v1 master key check"
_NONCE_END = 1 + NONCE_BYTES
_FIELD_MIN_BYTES = _NONCE_END + TAG_BYTES
_WRAP_HEADER_BYTES = 1 + KEY_ID_BYTES
_WRAPPED_KEY_BYTES = _WRAP_HEADER_BYTES + NONCE_BYTES + DATA_KEY_BYTES + TAG_BYTES
_CACHE_SIZE = 4096


def generate_master_key() -> bytes:
    """Return a new random master key."""
    return os.urandom(MASTER_KEY_BYTES)


def parse_master_key(text: str) -> bytes:
    """Decode a base64 master key; raise ValueError (naming no key material) if malformed."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise ValueError("master key is not valid base64") from None
    if len(key) != MASTER_KEY_BYTES:
        raise ValueError(f"master key must decode to exactly {MASTER_KEY_BYTES} bytes")
    return key


def encode_master_key(key: bytes) -> str:
    """Return the base64 text of a master key (the inverse of parse_master_key)."""
    _check_key(key, "master key")
    return base64.b64encode(key).decode("ascii")


def master_key_id(key: bytes) -> str:
    """Return the 16-hex-character id of a master key."""
    return _raw_key_id(key).hex()


def field_aad(table: str, row_id: str, field: str) -> bytes:
    """Return the associated data that binds a field ciphertext to its table, row and field."""
    for part in (table, row_id, field):
        if "|" in part:
            raise ValueError("AAD parts must not contain '|'")
    return f"{_AAD_PREFIX}{table}|{row_id}|{field}".encode("utf-8")


class Keyring:
    """Master keys that wrap per-app data keys: the first wraps, all of them unwrap."""

    def __init__(self, master_keys: list[bytes]):
        if not master_keys:
            raise ValueError("at least one master key is required")
        self._aeads: dict[bytes, AESGCM] = {}
        for key in master_keys:
            _check_key(key, "master key")
            self._aeads.setdefault(_raw_key_id(key), AESGCM(key))
        self._current_raw_id = _raw_key_id(master_keys[0])
        self.current_key_id = self._current_raw_id.hex()
        # functools.lru_cache is a bounded, thread-safe LRU implemented in C: the hot path is
        # one lookup. Failures (exceptions) are never cached.
        self._unwrap_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(self._unwrap_uncached)

    def __repr__(self) -> str:
        return f"<Keyring current={self.current_key_id} keys={len(self._aeads)}>"

    def also_opening(self, master_keys: list[bytes]) -> "Keyring":
        """A keyring with the same current key that also unwraps with ``master_keys`` (a
        retired key, to restore a backup made before a rotation)."""
        ring = Keyring(master_keys)
        ring._aeads = {**self._aeads, **{raw: aead for raw, aead in ring._aeads.items()
                                         if raw not in self._aeads}}
        ring._current_raw_id, ring.current_key_id = self._current_raw_id, self.current_key_id
        return ring

    def key_ids(self) -> list[str]:
        """Return the ids of the loaded master keys, current first."""
        return [raw.hex() for raw in self._aeads]

    def new_data_key(self) -> bytes:
        """Return a new random data key."""
        return os.urandom(DATA_KEY_BYTES)

    def wrap_data_key(self, data_key: bytes, app_id: str) -> bytes:
        """Encrypt a data key for one app under the current master key."""
        _check_key(data_key, "data key")
        return self._seal(bytes(data_key), _data_key_aad(app_id))

    def unwrap_data_key(self, wrapped: bytes, app_id: str) -> bytes:
        """Return the data key in a wrapped key; raise KeyringError if it does not open."""
        if type(wrapped) is not bytes:
            wrapped = bytes(wrapped)
        return self._unwrap_cached(wrapped, app_id)

    def wrapped_key_id(self, wrapped: bytes) -> str:
        """Return the id of the master key that wrapped a data key."""
        if len(wrapped) != _WRAPPED_KEY_BYTES or wrapped[:1] != VERSION:
            raise KeyringError
        return bytes(wrapped[1:_WRAP_HEADER_BYTES]).hex()

    def sealing_key_id(self, blob: bytes) -> str | None:
        """Return the id of the master key that sealed a blob (its header), or None."""
        if len(blob) < _WRAP_HEADER_BYTES or blob[:1] != VERSION:
            return None
        return bytes(blob[1:_WRAP_HEADER_BYTES]).hex()

    def make_check_blob(self) -> bytes:
        """Encrypt a known constant under the current master key, to detect a wrong key later."""
        return self._seal(_CHECK_CONSTANT, _CHECK_AAD)

    def verify_check_blob(self, blob: bytes) -> bool:
        """Return True iff a loaded master key opens the check blob."""
        try:
            return self._open(blob, _CHECK_AAD) == _CHECK_CONSTANT
        except KeyringError:
            return False

    def _unwrap_uncached(self, wrapped: bytes, app_id: str) -> bytes:
        aad = _data_key_aad(app_id)
        if len(wrapped) != _WRAPPED_KEY_BYTES:
            raise KeyringError
        return self._open(wrapped, aad)

    def _seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = self._aeads[self._current_raw_id].encrypt(nonce, plaintext, aad)
        return VERSION + self._current_raw_id + nonce + ciphertext

    def _open(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < _WRAP_HEADER_BYTES + NONCE_BYTES + TAG_BYTES or blob[:1] != VERSION:
            raise KeyringError
        aead = self._aeads.get(bytes(blob[1:_WRAP_HEADER_BYTES]))
        if aead is None:
            raise KeyringError
        nonce_end = _WRAP_HEADER_BYTES + NONCE_BYTES
        try:
            return aead.decrypt(blob[_WRAP_HEADER_BYTES:nonce_end], blob[nonce_end:], aad)
        except InvalidTag:
            raise KeyringError from None


def encrypt_field(data_key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt a field under a data key with a fresh random nonce."""
    nonce = os.urandom(NONCE_BYTES)
    return VERSION + nonce + _field_aead(data_key).encrypt(nonce, plaintext, aad)


def decrypt_field(data_key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Decrypt a field blob; raise KeyringError if it is malformed, tampered or misplaced."""
    if len(blob) < _FIELD_MIN_BYTES or blob[:1] != VERSION:
        raise KeyringError
    try:
        return _field_aead(data_key).decrypt(blob[1:_NONCE_END], blob[_NONCE_END:], aad)
    except InvalidTag:
        raise KeyringError from None


def encrypt_text(data_key: bytes, text: str, aad: bytes) -> bytes:
    """Encrypt a string as UTF-8."""
    return encrypt_field(data_key, text.encode("utf-8"), aad)


def decrypt_text(data_key: bytes, blob: bytes, aad: bytes) -> str:
    """Decrypt a field blob holding UTF-8 text."""
    plaintext = decrypt_field(data_key, blob, aad)
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        # The UnicodeDecodeError would carry the plaintext; drop it.
        raise KeyringError from None


def _field_aead(data_key: bytes) -> AESGCM:
    if type(data_key) is not bytes:
        data_key = bytes(data_key)
    return _cached_aead(data_key)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_aead(data_key: bytes) -> AESGCM:
    # Building AESGCM costs more than a 40-byte decrypt; cache one per data key.
    _check_key(data_key, "data key")
    return AESGCM(data_key)


def _check_key(key: bytes, name: str) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != MASTER_KEY_BYTES:
        raise ValueError(f"{name} must be {MASTER_KEY_BYTES} bytes")


def _raw_key_id(key: bytes) -> bytes:
    _check_key(key, "master key")
    return hashlib.sha256(_KEY_ID_DOMAIN + bytes(key)).digest()[:KEY_ID_BYTES]


def _data_key_aad(app_id: str) -> bytes:
    if "|" in app_id:
        raise ValueError("app id must not contain '|'")
    return _DATA_KEY_AAD_PREFIX + app_id.encode("utf-8")
