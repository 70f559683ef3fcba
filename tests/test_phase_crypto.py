"""Known-answer and property tests for Phase's wire crypto (phase_lite.phase_crypto)."""

import base64
import hashlib
import re

import nacl.bindings as sodium
import pytest

from support import VECTORS, VECTORS_PATH
from phase_lite.phase_crypto import (
    PH_V1_PATTERN,
    CryptoError,
    MintedToken,
    bearer_type,
    decrypt_asymmetric,
    decrypt_raw,
    encrypt_asymmetric,
    encrypt_raw,
    env_keypair,
    generate_env_salt,
    generate_env_seed,
    hash_bearer,
    is_ph_v1,
    key_digest,
    mint_token,
    random_hex,
    recover_token_private_key,
    xor_hex,
)

VECTORS_SHA256 = "9fc64b51d7a35d4a4397030fd08f75e9178ccf6b842323bb4900957988bd7144"

# The check every Phase client (CLI, SDKs, Terraform) applies to a token string.
CLIENT_TOKEN_RE = re.compile(r"^pss_(service|user):v\d+:" + ":".join(["[0-9a-fA-F]{64}"] * 4) + "$")
HEX64_RE = re.compile(r"[0-9a-f]{64}")

RECIPIENT_SEED = "fe" * 32
PLAINTEXTS = [
    "",
    "x",
    "hello world",
    "multi\nline\nvalue",
    "unicode: 日本語 🔐 émoji",
    "a" * 10_000,
]


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def _ids(vectors, field):
    return [f"{i}-{str(v[field])[:16]}" for i, v in enumerate(vectors)]


def _split_ph_v1(ciphertext):
    _ph, _v1, eph_hex, payload = ciphertext.split(":")
    return bytes.fromhex(eph_hex), base64.b64decode(payload)


def _join_ph_v1(eph: bytes, blob: bytes) -> str:
    return f"ph:v1:{eph.hex()}:{base64.b64encode(blob).decode()}"


@pytest.fixture(scope="module")
def recipient():
    public, private = env_keypair(RECIPIENT_SEED)
    return {"public": public, "private": private}


# --- Phase's published vectors (every one is a test) -------------------------------------------


@pytest.mark.parametrize(
    "vector", VECTORS["seed_keypairs"], ids=_ids(VECTORS["seed_keypairs"], "seed")
)
def test_seed_keypair_vector(vector):
    assert env_keypair(vector["seed"]) == (vector["public_key"], vector["private_key"])


@pytest.mark.parametrize(
    "vector", VECTORS["blake2b_digests"], ids=_ids(VECTORS["blake2b_digests"], "salt")
)
def test_blake2b_digest_vector(vector):
    assert key_digest(vector["input"], vector["salt"]) == vector["digest"]


def test_session_keys_vector():
    vector = VECTORS["session_keys"]
    pk_a, sk_a = sodium.crypto_kx_seed_keypair(bytes.fromhex(vector["seed_a"]))
    pk_b, sk_b = sodium.crypto_kx_seed_keypair(bytes.fromhex(vector["seed_b"]))
    assert (pk_a.hex(), sk_a.hex()) == (vector["public_key_a"], vector["private_key_a"])
    assert (pk_b.hex(), sk_b.hex()) == (vector["public_key_b"], vector["private_key_b"])
    assert env_keypair(vector["seed_a"]) == (vector["public_key_a"], vector["private_key_a"])

    client_rx, client_tx = sodium.crypto_kx_client_session_keys(pk_a, sk_a, pk_b)
    server_rx, server_tx = sodium.crypto_kx_server_session_keys(pk_b, sk_b, pk_a)
    assert client_rx.hex() == vector["client_rx"]
    assert client_tx.hex() == vector["client_tx"]
    assert server_rx.hex() == vector["server_rx"]
    assert server_tx.hex() == vector["server_tx"]


@pytest.mark.parametrize(
    "vector", VECTORS["encrypt_raw"], ids=_ids(VECTORS["encrypt_raw"], "plaintext")
)
def test_encrypt_raw_vector(vector):
    blob = bytes.fromhex(vector["ciphertext_with_nonce"])
    plaintext = decrypt_raw(blob, bytes.fromhex(vector["key"]))
    assert plaintext.decode("utf-8") == vector["plaintext"]


@pytest.mark.parametrize(
    "vector", VECTORS["asymmetric_encrypt"], ids=_ids(VECTORS["asymmetric_encrypt"], "plaintext")
)
def test_asymmetric_vector(vector):
    public, private = env_keypair(vector["recipient_seed"])
    assert (public, private) == (vector["recipient_public_key"], vector["recipient_private_key"])
    assert is_ph_v1(vector["ciphertext"])
    assert decrypt_asymmetric(vector["ciphertext"], private, public) == vector["plaintext"]


@pytest.mark.parametrize(
    "vector", VECTORS["xor_reconstruct"], ids=_ids(VECTORS["xor_reconstruct"], "expected")
)
def test_xor_vector(vector):
    first, second = vector["shares"]
    assert xor_hex(first, second) == vector["expected"]
    assert xor_hex(second, first) == vector["expected"]


def test_the_vector_copy_is_the_one_phase_published():
    assert hashlib.sha256(VECTORS_PATH.read_bytes()).hexdigest() == VECTORS_SHA256


# --- keyDigest -------------------------------------------------------------------------------


def test_key_digest_public_api_vector():
    digest = key_digest("DEBUG", "ab" * 32)
    assert digest == "ea9a14efe9d94abc196380bb58bbbee388e84ec2bb22336ba7d8b7e2c11cd178"


def test_key_digest_matches_libsodium_generichash():
    salt = generate_env_salt()
    expected = sodium.crypto_generichash_blake2b_salt_personal(
        b"API_KEY", digest_size=32, key=salt.encode()
    )
    assert key_digest("API_KEY", salt) == expected.hex()


def test_key_digest_does_not_upper_case():
    salt = generate_env_salt()
    assert key_digest("debug", salt) != key_digest("DEBUG", salt)


def test_key_digest_differs_per_salt():
    assert key_digest("DEBUG", generate_env_salt()) != key_digest("DEBUG", generate_env_salt())


# --- raw XChaCha20-Poly1305 ------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", PLAINTEXTS, ids=range(len(PLAINTEXTS)))
def test_raw_round_trip(plaintext):
    key = bytes.fromhex(random_hex())
    blob = encrypt_raw(plaintext.encode(), key)
    assert len(blob) == len(plaintext.encode()) + 16 + 24
    assert decrypt_raw(blob, key) == plaintext.encode()


def test_raw_uses_fresh_nonce_appended():
    key = bytes.fromhex(random_hex())
    first, second = encrypt_raw(b"same", key), encrypt_raw(b"same", key)
    assert first[-24:] != second[-24:]
    # The nonce is the trailing 24 bytes: libsodium decrypts the rest with it directly.
    ciphertext, nonce = first[:-24], first[-24:]
    plaintext = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, None, nonce, key)
    assert plaintext == b"same"


@pytest.mark.parametrize(
    "index", [0, 3, -25, -24, -1], ids=["ct0", "ct3", "tag15", "nonce0", "nonce23"]
)
def test_raw_flipped_byte_fails(index):
    key = bytes.fromhex(random_hex())
    blob = encrypt_raw(b"value", key)
    with pytest.raises(CryptoError):
        decrypt_raw(_flip(blob, index % len(blob)), key)


def test_raw_wrong_key_fails():
    blob = encrypt_raw(b"value", bytes.fromhex(random_hex()))
    with pytest.raises(CryptoError):
        decrypt_raw(blob, bytes.fromhex(random_hex()))


@pytest.mark.parametrize("length", [0, 1, 39])
def test_raw_truncated_fails(length):
    key = bytes.fromhex(random_hex())
    blob = encrypt_raw(b"", key)
    assert len(blob) == 40
    with pytest.raises(CryptoError):
        decrypt_raw(blob[:length], key)


def test_raw_bad_key_length():
    with pytest.raises(ValueError):
        encrypt_raw(b"value", b"short")
    with pytest.raises(CryptoError):
        decrypt_raw(encrypt_raw(b"value", bytes(32)), b"short")


# --- ph:v1 asymmetric ------------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", PLAINTEXTS, ids=range(len(PLAINTEXTS)))
def test_asymmetric_round_trip(plaintext, recipient):
    ciphertext = encrypt_asymmetric(plaintext, recipient["public"])
    assert is_ph_v1(ciphertext)
    assert decrypt_asymmetric(ciphertext, recipient["private"], recipient["public"]) == plaintext


def test_asymmetric_wire_format(recipient):
    ciphertext = encrypt_asymmetric("hello", recipient["public"])
    prefix, version, eph_hex, payload = ciphertext.split(":")
    assert (prefix, version) == ("ph", "v1")
    assert HEX64_RE.fullmatch(eph_hex)
    blob = base64.b64decode(payload, validate=True)
    assert base64.b64encode(blob).decode() == payload  # standard alphabet, padded
    assert len(blob) == len(b"hello") + 16 + 24
    # Decrypt by hand the way Phase's clients do: kx server rx key, nonce at the end.
    public, private = bytes.fromhex(recipient["public"]), bytes.fromhex(recipient["private"])
    rx, _tx = sodium.crypto_kx_server_session_keys(public, private, bytes.fromhex(eph_hex))
    plaintext = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(blob[:-24], None, blob[-24:], rx)
    assert plaintext == b"hello"


def test_asymmetric_fresh_ephemeral_key_each_call(recipient):
    first = encrypt_asymmetric("same", recipient["public"])
    second = encrypt_asymmetric("same", recipient["public"])
    assert first.split(":")[2] != second.split(":")[2]
    assert first != second


@pytest.mark.parametrize("where", ["ciphertext", "tag", "nonce", "ephemeral_key"])
def test_asymmetric_tampered_fails(where, recipient):
    eph, blob = _split_ph_v1(encrypt_asymmetric("tamper me", recipient["public"]))
    if where == "ephemeral_key":
        eph = _flip(eph, 5)
    else:
        blob = _flip(blob, {"ciphertext": 0, "tag": len(blob) - 30, "nonce": len(blob) - 1}[where])
    with pytest.raises(CryptoError):
        decrypt_asymmetric(_join_ph_v1(eph, blob), recipient["private"], recipient["public"])


def test_asymmetric_wrong_recipient_fails(recipient):
    ciphertext = encrypt_asymmetric("for someone else", env_keypair(generate_env_seed())[0])
    with pytest.raises(CryptoError):
        decrypt_asymmetric(ciphertext, recipient["private"], recipient["public"])


def test_asymmetric_wrong_public_key_fails(recipient):
    ciphertext = encrypt_asymmetric("value", recipient["public"])
    other_public = env_keypair(generate_env_seed())[0]
    with pytest.raises(CryptoError):
        decrypt_asymmetric(ciphertext, recipient["private"], other_public)


def _valid_parts(recipient):
    return encrypt_asymmetric("value", recipient["public"]).split(":")


MALFORMED = {
    "empty": lambda p: "",
    "three_parts": lambda p: ":".join(p[:3]),
    "five_parts": lambda p: ":".join(p + ["extra"]),
    "wrong_prefix": lambda p: ":".join(["pk", *p[1:]]),
    "wrong_version": lambda p: ":".join(["ph", "v2", *p[2:]]),
    "non_hex_key": lambda p: ":".join([*p[:2], "zz" + p[2][2:], p[3]]),
    "short_key": lambda p: ":".join([*p[:2], p[2][:62], p[3]]),
    "long_key": lambda p: ":".join([*p[:2], p[2] + "00", p[3]]),
    "bad_base64": lambda p: ":".join([*p[:3], "!!not*base64!!"]),
    "bad_padding": lambda p: ":".join([*p[:3], p[3].rstrip("=") + "A"]),
    "non_ascii_base64": lambda p: ":".join([*p[:3], "ü" + p[3]]),
    "junk_in_base64": lambda p: ":".join([*p[:3], p[3][:8] + "*" + p[3][8:]]),
    "urlsafe_base64": lambda p: ":".join([*p[:3], "-_" + p[3][2:]]),
    "empty_payload": lambda p: ":".join([*p[:3], ""]),
    "short_payload": lambda p: ":".join([*p[:3], base64.b64encode(b"x" * 39).decode()]),
}


@pytest.mark.parametrize("mangle", MALFORMED.values(), ids=MALFORMED.keys())
def test_asymmetric_malformed_fails(mangle, recipient):
    with pytest.raises(CryptoError):
        decrypt_asymmetric(
            mangle(_valid_parts(recipient)), recipient["private"], recipient["public"]
        )


def test_asymmetric_non_utf8_plaintext_fails(recipient):
    eph_public, eph_private = sodium.crypto_kx_keypair()
    _rx, tx = sodium.crypto_kx_client_session_keys(
        eph_public, eph_private, bytes.fromhex(recipient["public"])
    )
    ciphertext = _join_ph_v1(eph_public, encrypt_raw(b"\xff\xfe not utf-8", tx))
    with pytest.raises(CryptoError):
        decrypt_asymmetric(ciphertext, recipient["private"], recipient["public"])


def test_asymmetric_bad_own_keys_fail(recipient):
    ciphertext = encrypt_asymmetric("value", recipient["public"])
    with pytest.raises(CryptoError):
        decrypt_asymmetric(ciphertext, "not hex", recipient["public"])
    with pytest.raises(CryptoError):
        decrypt_asymmetric(ciphertext, recipient["private"], "ab")


def test_crypto_error_carries_no_payload(recipient):
    with pytest.raises(CryptoError) as excinfo:
        decrypt_asymmetric(
            "ph:v1:" + "00" * 32 + ":secret-looking-data", recipient["private"], recipient["public"]
        )
    assert excinfo.value.args == ()
    assert str(excinfo.value) == ""
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__


# --- ph:v1 validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "ph:v1:" + "a" * 64 + ":x",
        "ph:v1:" + "A1" * 32 + ":YWJj",
        "ph:v1:" + "0" * 64 + ":anything: even colons",
        VECTORS["asymmetric_encrypt"][0]["ciphertext"],
    ],
)
def test_is_ph_v1_accepts(value):
    assert is_ph_v1(value)
    assert PH_V1_PATTERN.fullmatch(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "plaintext",
        "ph:v1:",
        "ph:v1:" + "a" * 64 + ":",
        "ph:v1:" + "a" * 63 + ":x",
        "ph:v1:" + "a" * 65 + ":x",
        "ph:v1:" + "g" * 64 + ":x",
        "ph:v2:" + "a" * 64 + ":x",
        "PH:V1:" + "a" * 64 + ":x",
        " ph:v1:" + "a" * 64 + ":x",
        "xph:v1:" + "a" * 64 + ":x",
    ],
)
def test_is_ph_v1_rejects(value):
    assert not is_ph_v1(value)


def test_is_ph_v1_matches_fresh_ciphertext(recipient):
    assert is_ph_v1(encrypt_asymmetric("", recipient["public"]))


# --- small helpers -----------------------------------------------------------------------------


def test_random_values_are_hex_and_distinct():
    assert HEX64_RE.fullmatch(random_hex())
    assert len(random_hex(16)) == 32
    seeds = {generate_env_seed() for _ in range(20)} | {generate_env_salt() for _ in range(20)}
    assert len(seeds) == 40
    assert all(HEX64_RE.fullmatch(seed) for seed in seeds)


def test_xor_hex_rejects_different_lengths():
    with pytest.raises(ValueError):
        xor_hex("00" * 32, "00" * 31)


def test_xor_hex_accepts_upper_case_and_returns_lower_case():
    assert xor_hex("FF00", "0f0f") == "f00f"


def test_bearer_type():
    assert bearer_type("service") == "ServiceAccount"
    assert bearer_type("user") == "User"
    with pytest.raises(ValueError):
        bearer_type("env")


def test_hash_bearer():
    assert hash_bearer("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    bearer = random_hex()
    assert hash_bearer(bearer) == hashlib.sha256(bearer.encode()).hexdigest()
    assert hash_bearer(bearer) != bearer


# --- token minting and the client flow ---------------------------------------------------------


@pytest.mark.parametrize("kind, prefix", [("service", "pss_service:v2:"), ("user", "pss_user:v1:")])
def test_mint_token_format(kind, prefix):
    minted = mint_token(kind)
    assert isinstance(minted, MintedToken)
    assert minted.token.startswith(prefix)
    assert CLIENT_TOKEN_RE.match(minted.token)
    _kind, _version, bearer, public_key, key_share0, wrap_key = minted.token.split(":")
    assert (bearer, public_key) == (minted.bearer, minted.public_key)
    assert HEX64_RE.fullmatch(minted.bearer) and HEX64_RE.fullmatch(minted.public_key)
    assert len({bearer, public_key, key_share0, wrap_key}) == 4
    assert re.fullmatch(r"[0-9a-f]{208}", minted.wrapped_key_share)


def test_mint_token_rejects_unknown_kind():
    with pytest.raises(ValueError):
        mint_token("env")


def test_mint_token_is_fresh_each_time():
    first, second = mint_token("service"), mint_token("service")
    assert first.bearer != second.bearer
    assert first.public_key != second.public_key
    assert first.token.split(":")[4:] != second.token.split(":")[4:]


def test_minted_token_repr_hides_secrets():
    minted = mint_token("service")
    text = repr(minted)
    for secret in [minted.bearer, *minted.token.split(":")[4:]]:
        assert secret not in text


@pytest.mark.parametrize("kind", ["service", "user"])
def test_recovered_private_key_matches_public_key(kind):
    minted = mint_token(kind)
    private_key = recover_token_private_key(minted.token, minted.wrapped_key_share)
    assert HEX64_RE.fullmatch(private_key)
    assert sodium.crypto_scalarmult_base(bytes.fromhex(private_key)).hex() == minted.public_key


def test_wrapped_key_share_plaintext_is_hex_text():
    minted = mint_token("service")
    _kind, _version, _bearer, _public, key_share0, wrap_key = minted.token.split(":")
    text = decrypt_raw(bytes.fromhex(minted.wrapped_key_share), bytes.fromhex(wrap_key))
    assert HEX64_RE.fullmatch(text.decode("ascii"))
    private_key = recover_token_private_key(minted.token, minted.wrapped_key_share)
    assert xor_hex(key_share0, text.decode("ascii")) == private_key


def test_client_flow_unwraps_env_seed_and_salt():
    """Follow a Phase client from token string to secret, as /service/secrets/tokens/ enables."""
    minted = mint_token("service")
    seed, salt = generate_env_seed(), generate_env_salt()
    env_public, env_private = env_keypair(seed)
    wrapped_seed = encrypt_asymmetric(seed, minted.public_key)
    wrapped_salt = encrypt_asymmetric(salt, minted.public_key)
    secret_key = encrypt_asymmetric("DATABASE_URL", env_public)

    token_private = recover_token_private_key(minted.token, minted.wrapped_key_share)
    client_seed = decrypt_asymmetric(wrapped_seed, token_private, minted.public_key)
    client_salt = decrypt_asymmetric(wrapped_salt, token_private, minted.public_key)
    assert (client_seed, client_salt) == (seed, salt)
    client_public, client_private = env_keypair(client_seed)
    assert client_public == env_public
    assert decrypt_asymmetric(secret_key, client_private, client_public) == "DATABASE_URL"
    assert key_digest("DATABASE_URL", client_salt) == key_digest("DATABASE_URL", salt)


def _mangled_tokens():
    minted = mint_token("service")
    other = mint_token("service")
    parts = minted.token.split(":")
    share = minted.wrapped_key_share
    return {
        "empty_token": ("", share),
        "five_segments": (":".join(parts[:-1]), share),
        "env_token": (":".join(["pss_env", *parts[1:]]), share),
        "short_segment": (":".join([*parts[:-1], parts[-1][:62]]), share),
        "non_hex_segment": (":".join([*parts[:-1], "zz" + parts[-1][2:]]), share),
        "trailing_text": (minted.token + ":extra", share),
        "share_not_hex": (minted.token, "zz" + share[2:]),
        "share_truncated": (minted.token, share[:78]),
        "share_flipped": (minted.token, share[:-2] + format(int(share[-2:], 16) ^ 1, "02x")),
        "other_tokens_share": (minted.token, other.wrapped_key_share),
        "raw_bytes_share": (
            minted.token,
            encrypt_raw(bytes.fromhex(random_hex()), bytes.fromhex(parts[5])).hex(),
        ),
        "short_text_share": (minted.token, encrypt_raw(b"abcd", bytes.fromhex(parts[5])).hex()),
    }


MANGLED_TOKENS = _mangled_tokens()


@pytest.mark.parametrize("token, share", MANGLED_TOKENS.values(), ids=MANGLED_TOKENS.keys())
def test_recover_token_private_key_malformed(token, share):
    with pytest.raises(CryptoError):
        recover_token_private_key(token, share)
