"""Phase's wire cryptography: kx key pairs, XChaCha20-Poly1305, ph:v1 strings, keyDigest, tokens.

This module speaks the formats that Phase's CLI and SDKs speak, byte for byte. It is a leaf:
stdlib and PyNaCl (libsodium) only. Every decryption or parsing failure raises ``CryptoError``,
which carries no payload because exception messages end up in logs.

Formats (all hex is lowercase on output and accepted in either case on input):

* **Raw blob** (``encrypt_raw``/``decrypt_raw``): XChaCha20-Poly1305-IETF with a 32-byte key,
  no associated data and a fresh random 24-byte nonce per call. The blob is
  ``ciphertext || tag(16) || nonce(24)``: the nonce is *appended*, not prepended.
* **ph:v1 string** (``encrypt_asymmetric``/``decrypt_asymmetric``):
  ``ph:v1:<ephemeral public key, 64 hex>:<standard padded base64 of the raw blob>``.
  The sender makes an ephemeral ``crypto_kx`` key pair and encrypts the UTF-8 plaintext with the
  *tx* key of ``crypto_kx_client_session_keys(eph_pk, eph_sk, recipient_pk)``; the recipient
  decrypts with the *rx* key of ``crypto_kx_server_session_keys(recipient_pk, recipient_sk,
  eph_pk)``.
* **Environment key pair**: ``crypto_kx_seed_keypair(bytes.fromhex(seed_hex))``; seed and salt
  are 32 random bytes kept as 64-char hex strings.
* **keyDigest**: BLAKE2b-256 of the UTF-8 key name, keyed with the UTF-8 bytes of the salt's
  *hex text* (64 bytes, BLAKE2b's maximum key length), as lowercase hex.
* **Token string**: ``pss_service:v2:<bearer>:<public_key>:<key_share0>:<wrap_key>`` (service
  account) or ``pss_user:v1:...`` (personal access token); each segment is 32 bytes as 64 hex.
  Only ``bearer`` is ever sent to the server. The token's ``crypto_kx`` private key is
  ``key_share0 XOR key_share1``.
* **wrapped_key_share**: hex of the raw blob whose plaintext is ``key_share1`` *as 64 hex
  characters of ASCII text* under ``wrap_key``: 64 + 16 + 24 bytes = 208 hex characters.
  Clients hex-decode the decrypted text, so wrapping the raw 32 bytes would break them.
"""

import base64
import binascii
import hashlib
import re
import secrets
from dataclasses import dataclass, field

import nacl.bindings as sodium
import nacl.exceptions

KEY_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
NONCE_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
TAG_BYTES = sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16

# The field validation Phase's server applies to client-encrypted strings (use fullmatch).
PH_V1_PATTERN = re.compile(r"ph:v1:[0-9a-fA-F]{64}:.+")

# The check every Phase client applies to a token string.
_TOKEN_PATTERN = re.compile(r"pss_(service|user):v\d+" + r":([0-9a-fA-F]{64})" * 4)

_TOKEN_PREFIXES = {"service": "pss_service:v2", "user": "pss_user:v1"}
_BEARER_TYPES = {"service": "ServiceAccount", "user": "User"}


class CryptoError(Exception):
    """Any failure to decrypt or parse Phase ciphertext.

    Carries no payload (messages reach logs).
    """


def random_hex(nbytes: int = 32) -> str:
    """Return ``nbytes`` random bytes from the OS CSPRNG as hex."""
    return secrets.token_hex(nbytes)


def generate_env_seed() -> str:
    """Return a fresh environment seed: 32 random bytes as 64 hex."""
    return random_hex(32)


def generate_env_salt() -> str:
    """Return a fresh environment salt: 32 random bytes as 64 hex."""
    return random_hex(32)


def env_keypair(seed_hex: str) -> tuple[str, str]:
    """Derive an environment's ``(public_hex, private_hex)`` kx key pair from its seed."""
    public, private = sodium.crypto_kx_seed_keypair(bytes.fromhex(seed_hex))
    return public.hex(), private.hex()


def key_digest(key: str, salt_hex: str) -> str:
    """Return Phase's keyDigest of ``key`` (not upper-cased here) under the env salt hex text."""
    return hashlib.blake2b(key.encode(), key=salt_hex.encode(), digest_size=32).hexdigest()


def encrypt_raw(plaintext: bytes, key: bytes) -> bytes:
    """Encrypt with XChaCha20-Poly1305 under a fresh nonce; return ciphertext||tag||nonce."""
    if len(key) != KEY_BYTES:
        raise ValueError("key must be 32 bytes")
    nonce = secrets.token_bytes(NONCE_BYTES)
    return sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, None, nonce, key) + nonce


def decrypt_raw(blob: bytes, key: bytes) -> bytes:
    """Decrypt a ciphertext||tag||nonce blob; raise CryptoError on any failure."""
    if len(key) != KEY_BYTES or len(blob) < TAG_BYTES + NONCE_BYTES:
        raise CryptoError()
    ciphertext, nonce = blob[:-NONCE_BYTES], blob[-NONCE_BYTES:]
    try:
        return sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, None, nonce, key)
    except (nacl.exceptions.CryptoError, TypeError, ValueError):
        raise CryptoError() from None


def encrypt_asymmetric(plaintext: str, recipient_public_hex: str) -> str:
    """Encrypt ``plaintext`` to a kx public key as a ``ph:v1:`` string (fresh ephemeral key)."""
    recipient_public = bytes.fromhex(recipient_public_hex)
    eph_public, eph_private = sodium.crypto_kx_keypair()
    _rx, tx = sodium.crypto_kx_client_session_keys(eph_public, eph_private, recipient_public)
    blob = encrypt_raw(plaintext.encode(), tx)
    return f"ph:v1:{eph_public.hex()}:{base64.b64encode(blob).decode('ascii')}"


def decrypt_asymmetric(ciphertext: str, private_hex: str, public_hex: str) -> str:
    """Decrypt a ``ph:v1:`` string with the recipient's kx key pair; CryptoError if malformed."""
    parts = ciphertext.split(":")
    if len(parts) != 4 or parts[0] != "ph" or parts[1] != "v1":
        raise CryptoError()
    try:
        eph_public = bytes.fromhex(parts[2])
        blob = base64.b64decode(parts[3], validate=True)
        rx, _tx = sodium.crypto_kx_server_session_keys(
            bytes.fromhex(public_hex), bytes.fromhex(private_hex), eph_public
        )
    except (nacl.exceptions.CryptoError, binascii.Error, TypeError, ValueError):
        raise CryptoError() from None
    try:
        return decrypt_raw(blob, rx).decode()
    except UnicodeDecodeError:
        raise CryptoError() from None


def is_ph_v1(value: str) -> bool:
    """Return whether ``value`` passes Phase's server-side ph:v1 field validation."""
    return PH_V1_PATTERN.fullmatch(value) is not None


def xor_hex(a_hex: str, b_hex: str) -> str:
    """XOR two equal-length hex strings byte by byte; raise ValueError if lengths differ."""
    a, b = bytes.fromhex(a_hex), bytes.fromhex(b_hex)
    if len(a) != len(b):
        raise ValueError("hex strings differ in length")
    return bytes(x ^ y for x, y in zip(a, b)).hex()


@dataclass(frozen=True)
class MintedToken:
    """A freshly minted token: the string shown once, and what the server keeps."""

    token: str = field(repr=False)  # the full pss_* string: show once, never store or log
    bearer: str = field(repr=False)  # the credential itself
    public_key: str
    wrapped_key_share: str


def mint_token(kind: str) -> MintedToken:
    """Mint a Phase-compatible ``"service"`` or ``"user"`` token with its own kx key pair."""
    if kind not in _TOKEN_PREFIXES:
        raise ValueError("kind must be 'service' or 'user'")
    public, private = sodium.crypto_kx_keypair()
    key_share0 = random_hex(32)
    wrap_key = random_hex(32)
    bearer = random_hex(32)
    key_share1 = xor_hex(private.hex(), key_share0)
    wrapped_key_share = encrypt_raw(key_share1.encode(), bytes.fromhex(wrap_key)).hex()
    token = f"{_TOKEN_PREFIXES[kind]}:{bearer}:{public.hex()}:{key_share0}:{wrap_key}"
    return MintedToken(
        token=token, bearer=bearer, public_key=public.hex(), wrapped_key_share=wrapped_key_share
    )


def recover_token_private_key(token: str, wrapped_key_share: str) -> str:
    """Recover a token's kx private key as a client does; raise CryptoError if malformed."""
    match = _TOKEN_PATTERN.fullmatch(token)
    if match is None:
        raise CryptoError()
    _kind, _bearer, _public, key_share0, wrap_key = match.groups()
    try:
        blob = bytes.fromhex(wrapped_key_share)
    except ValueError:
        raise CryptoError() from None
    key_share1_text = decrypt_raw(blob, bytes.fromhex(wrap_key))
    try:
        return xor_hex(key_share0, key_share1_text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise CryptoError() from None


def bearer_type(kind: str) -> str:
    """Return the Authorization header type for a token kind."""
    try:
        return _BEARER_TYPES[kind]
    except KeyError:
        raise ValueError("kind must be 'service' or 'user'") from None


def hash_bearer(bearer: str) -> str:
    """Return the hex SHA-256 of the bearer text, which is what the server stores."""
    # Bearers are 256-bit random values, so a fast unsalted hash resists guessing fully.
    return hashlib.sha256(bearer.encode()).hexdigest()
