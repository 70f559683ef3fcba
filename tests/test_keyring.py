import base64
import hashlib
import pathlib
import re

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from phase_lite import keyring
from phase_lite.keyring import (
    MASTER_KEY_BYTES,
    Keyring,
    KeyringError,
    decrypt_field,
    decrypt_text,
    encode_master_key,
    encrypt_field,
    encrypt_text,
    field_aad,
    generate_master_key,
    master_key_id,
    parse_master_key,
)

DATA_KEY = bytes(range(32))
AAD = field_aad("secrets", "row-1", "value")
PLAINTEXT = b"postgres://user:hunter2@db/app"
WRAPPED_LEN = 1 + 8 + 12 + 32 + 16


@pytest.fixture
def master():
    return generate_master_key()


@pytest.fixture
def ring(master):
    return Keyring([master])


def flip(blob, position):
    out = bytearray(blob)
    out[position] ^= 0x01
    return bytes(out)


# Fields


@pytest.mark.parametrize("plaintext", [b"", b"x", PLAINTEXT, bytes(range(256)) * 40])
def test_field_round_trip(plaintext):
    blob = encrypt_field(DATA_KEY, plaintext, AAD)
    assert decrypt_field(DATA_KEY, blob, AAD) == plaintext


@pytest.mark.parametrize("text", ["", "plain", "ünïcødé ☃ 秘密 🔑", "line\nbreak\x00nul"])
def test_text_round_trip(text):
    blob = encrypt_text(DATA_KEY, text, AAD)
    assert decrypt_text(DATA_KEY, blob, AAD) == text
    assert len(blob) == 1 + 12 + len(text.encode("utf-8")) + 16


def test_decrypt_accepts_bytes_like_inputs():
    blob = encrypt_field(DATA_KEY, PLAINTEXT, AAD)
    assert decrypt_field(bytearray(DATA_KEY), memoryview(blob), AAD) == PLAINTEXT


def test_wrong_data_key_fails():
    blob = encrypt_field(DATA_KEY, PLAINTEXT, AAD)
    with pytest.raises(KeyringError):
        decrypt_field(bytes(32), blob, AAD)


@pytest.mark.parametrize(
    "other_aad",
    [
        field_aad("secrets", "row-2", "value"),
        field_aad("secrets", "row-1", "comment"),
        field_aad("secret_versions", "row-1", "value"),
        b"",
    ],
    ids=["other-row", "other-field", "other-table", "empty"],
)
def test_wrong_aad_fails(other_aad):
    blob = encrypt_field(DATA_KEY, PLAINTEXT, AAD)
    with pytest.raises(KeyringError):
        decrypt_field(DATA_KEY, blob, other_aad)


@pytest.mark.parametrize(
    "position",
    [0, 1, 6, 12, 13, 20, 13 + len(PLAINTEXT) - 1, -16, -8, -1],
    ids=lambda p: f"byte{p}",
)
def test_flipped_byte_fails(position):
    # 0 = version, 1..12 = nonce, 13.. = ciphertext, last 16 = tag
    blob = encrypt_field(DATA_KEY, PLAINTEXT, AAD)
    with pytest.raises(KeyringError):
        decrypt_field(DATA_KEY, flip(blob, position), AAD)


@pytest.mark.parametrize("length", [0, 1, 12, 13, 28, 29, 40, -1])
def test_truncated_field_fails(length):
    blob = encrypt_field(DATA_KEY, PLAINTEXT, AAD)
    with pytest.raises(KeyringError):
        decrypt_field(DATA_KEY, blob[:length], AAD)


def test_truncated_empty_plaintext_blob_fails():
    blob = encrypt_field(DATA_KEY, b"", AAD)
    assert len(blob) == 29
    with pytest.raises(KeyringError):
        decrypt_field(DATA_KEY, blob[:-1], AAD)


def test_extended_field_fails():
    blob = encrypt_field(DATA_KEY, PLAINTEXT, AAD)
    with pytest.raises(KeyringError):
        decrypt_field(DATA_KEY, blob + b"\x00", AAD)


def test_field_format_is_pinned():
    blob = encrypt_field(DATA_KEY, PLAINTEXT, AAD)
    assert len(blob) == 1 + 12 + len(PLAINTEXT) + 16
    assert blob[0] == 0x01
    nonce, body = blob[1:13], blob[13:]
    assert AESGCM(DATA_KEY).decrypt(nonce, body, AAD) == PLAINTEXT


def test_field_known_answer():
    nonce = bytes.fromhex("000102030405060708090a0b")
    aad = b"phase_lite/v1|secrets|row-1|value"
    blob = b"\x01" + nonce + AESGCM(DATA_KEY).encrypt(nonce, PLAINTEXT, aad)
    assert decrypt_field(DATA_KEY, blob, AAD) == PLAINTEXT
    assert decrypt_text(DATA_KEY, blob, AAD) == PLAINTEXT.decode()


def test_unknown_version_fails_even_with_valid_ciphertext():
    nonce = bytes(12)
    body = AESGCM(DATA_KEY).encrypt(nonce, PLAINTEXT, AAD)
    with pytest.raises(KeyringError):
        decrypt_field(DATA_KEY, b"\x02" + nonce + body, AAD)


def test_nonces_differ_between_encryptions():
    blobs = {encrypt_field(DATA_KEY, PLAINTEXT, AAD) for _ in range(50)}
    assert len(blobs) == 50
    assert len({blob[1:13] for blob in blobs}) == 50


def test_decrypt_text_of_non_utf8_fails_without_leaking():
    blob = encrypt_field(DATA_KEY, b"\xffsecret-bytes", AAD)
    with pytest.raises(KeyringError) as excinfo:
        decrypt_text(DATA_KEY, blob, AAD)
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__


@pytest.mark.parametrize("length", [0, 16, 24, 31, 33])
def test_field_rejects_wrong_key_length(length):
    with pytest.raises(ValueError):
        encrypt_field(bytes(length), PLAINTEXT, AAD)


# field_aad


def test_field_aad_layout():
    assert field_aad("secrets", "r1", "key") == b"phase_lite/v1|secrets|r1|key"
    assert field_aad("t", "ü", "f") == "phase_lite/v1|t|ü|f".encode("utf-8")


@pytest.mark.parametrize(
    "parts", [("a|b", "r", "f"), ("t", "r|", "f"), ("t", "r", "|f"), ("|", "|", "|")]
)
def test_field_aad_rejects_separator(parts):
    with pytest.raises(ValueError):
        field_aad(*parts)


# Wrapped data keys


def test_new_data_key_is_random_32_bytes(ring):
    first, second = ring.new_data_key(), ring.new_data_key()
    assert len(first) == len(second) == 32
    assert first != second


def test_wrap_unwrap_round_trip(ring, master):
    data_key = ring.new_data_key()
    wrapped = ring.wrap_data_key(data_key, "app-1")
    assert len(wrapped) == WRAPPED_LEN
    assert wrapped[0] == 0x01
    assert wrapped[1:9] == bytes.fromhex(master_key_id(master))
    assert ring.unwrap_data_key(wrapped, "app-1") == data_key
    assert ring.unwrap_data_key(wrapped, "app-1") == data_key  # cached path
    assert Keyring([master]).unwrap_data_key(wrapped, "app-1") == data_key  # fresh cache


def test_wrapped_key_known_answer(master):
    data_key = bytes(range(100, 132))
    nonce = bytes(range(12))
    key_id = bytes.fromhex(master_key_id(master))
    aad = b"phase_lite/v1|data-key|app-1"
    wrapped = b"\x01" + key_id + nonce + AESGCM(master).encrypt(nonce, data_key, aad)
    assert Keyring([master]).unwrap_data_key(wrapped, "app-1") == data_key


def test_wrapping_twice_uses_fresh_nonces(ring):
    data_key = ring.new_data_key()
    assert ring.wrap_data_key(data_key, "a") != ring.wrap_data_key(data_key, "a")


def test_unwrap_with_wrong_app_fails(ring):
    wrapped = ring.wrap_data_key(ring.new_data_key(), "app-1")
    with pytest.raises(KeyringError):
        ring.unwrap_data_key(wrapped, "app-2")


def test_unwrap_wrong_app_fails_after_cache_hit(ring):
    wrapped = ring.wrap_data_key(ring.new_data_key(), "app-1")
    ring.unwrap_data_key(wrapped, "app-1")
    with pytest.raises(KeyringError):
        ring.unwrap_data_key(wrapped, "app-2")


@pytest.mark.parametrize("position", range(WRAPPED_LEN))
def test_unwrap_flipped_byte_fails(ring, position):
    data_key = ring.new_data_key()
    wrapped = ring.wrap_data_key(data_key, "app-1")
    ring.unwrap_data_key(wrapped, "app-1")  # warm the cache: tampering must still fail
    with pytest.raises(KeyringError):
        ring.unwrap_data_key(flip(wrapped, position), "app-1")


@pytest.mark.parametrize("length", [0, 1, 9, 21, 37, WRAPPED_LEN - 1])
def test_unwrap_truncated_fails(ring, length):
    wrapped = ring.wrap_data_key(ring.new_data_key(), "app-1")
    with pytest.raises(KeyringError):
        ring.unwrap_data_key(wrapped[:length], "app-1")


def test_unwrap_with_unknown_master_key_fails(ring):
    wrapped = ring.wrap_data_key(ring.new_data_key(), "app-1")
    with pytest.raises(KeyringError):
        Keyring([generate_master_key()]).unwrap_data_key(wrapped, "app-1")


def test_unwrap_with_known_id_but_wrong_key_fails(master):
    wrapped = Keyring([master]).wrap_data_key(bytes(32), "app-1")
    other = Keyring([generate_master_key()])
    forged = wrapped[:1] + bytes.fromhex(other.current_key_id) + wrapped[9:]
    with pytest.raises(KeyringError):
        other.unwrap_data_key(forged, "app-1")


def test_wrap_rejects_bad_input(ring):
    with pytest.raises(ValueError):
        ring.wrap_data_key(bytes(16), "app-1")
    with pytest.raises(ValueError):
        ring.wrap_data_key(bytes(32), "app|1")


def test_rotation():
    old, new = generate_master_key(), generate_master_key()
    data_key = bytes(range(32))
    wrapped_old = Keyring([old]).wrap_data_key(data_key, "app-1")

    rotating = Keyring([new, old])
    assert rotating.current_key_id == master_key_id(new)
    assert rotating.key_ids() == [master_key_id(new), master_key_id(old)]
    assert rotating.unwrap_data_key(wrapped_old, "app-1") == data_key
    wrapped_new = rotating.wrap_data_key(rotating.unwrap_data_key(wrapped_old, "app-1"), "app-1")
    assert rotating.wrapped_key_id(wrapped_old) == master_key_id(old)
    assert rotating.wrapped_key_id(wrapped_new) == master_key_id(new)

    rotated = Keyring([new])
    assert rotated.unwrap_data_key(wrapped_new, "app-1") == data_key
    with pytest.raises(KeyringError):
        rotated.unwrap_data_key(wrapped_old, "app-1")


def test_rotate_app_reencrypts_fields(ring):
    old_key, new_key = ring.new_data_key(), ring.new_data_key()
    blob = encrypt_text(old_key, "value", AAD)
    rotated = encrypt_text(new_key, decrypt_text(old_key, blob, AAD), AAD)
    assert decrypt_text(new_key, rotated, AAD) == "value"
    with pytest.raises(KeyringError):
        decrypt_text(old_key, rotated, AAD)


def test_wrapped_key_id(ring, master):
    wrapped = ring.wrap_data_key(ring.new_data_key(), "app-1")
    assert ring.wrapped_key_id(wrapped) == master_key_id(master) == ring.current_key_id


@pytest.mark.parametrize(
    "blob", [b"", b"\x01", b"\x01" + bytes(8), b"\x02" + bytes(WRAPPED_LEN - 1), bytes(100)]
)
def test_wrapped_key_id_rejects_malformed(ring, blob):
    with pytest.raises(KeyringError):
        ring.wrapped_key_id(blob)


# Keyring construction


@pytest.mark.parametrize(
    "keys", [[], [bytes(31)], [bytes(33)], [generate_master_key(), b""], ["a" * 32]]
)
def test_keyring_rejects_bad_keys(keys):
    with pytest.raises(ValueError):
        Keyring(keys)


def test_keyring_repr_has_no_key_material(master):
    ring = Keyring([master])
    text = repr(ring) + str(vars(ring).get("current_key_id"))
    assert master.hex() not in text
    assert encode_master_key(master) not in text


# Check blob


def test_check_blob_verifies_with_right_key(ring, master):
    blob = ring.make_check_blob()
    assert blob[0] == 0x01
    assert blob[1:9] == bytes.fromhex(master_key_id(master))
    assert ring.verify_check_blob(blob)
    assert Keyring([master]).verify_check_blob(blob)
    assert Keyring([generate_master_key(), master]).verify_check_blob(blob)


def test_check_blob_known_answer(master):
    nonce = bytes(12)
    aad = b"phase_lite/v1|master-key-check"
    body = AESGCM(master).encrypt(nonce, b"phase_lite/v1 master key check", aad)
    blob = b"\x01" + bytes.fromhex(master_key_id(master)) + nonce + body
    assert Keyring([master]).verify_check_blob(blob)


def test_check_blob_rejects_wrong_key(ring):
    blob = ring.make_check_blob()
    assert not Keyring([generate_master_key()]).verify_check_blob(blob)


def test_check_blob_rejects_wrong_key_with_forged_id(ring):
    other = Keyring([generate_master_key()])
    blob = ring.make_check_blob()
    forged = blob[:1] + bytes.fromhex(other.current_key_id) + blob[9:]
    assert not other.verify_check_blob(forged)


def test_check_blob_rejects_tampering(ring):
    blob = ring.make_check_blob()
    assert not ring.verify_check_blob(flip(blob, len(blob) - 1))
    assert not ring.verify_check_blob(blob[:-1])
    assert not ring.verify_check_blob(b"")


def test_check_blob_is_not_a_wrapped_key(ring):
    # Different associated data: a check blob never unwraps as an app key, and vice versa.
    wrapped = ring.wrap_data_key(ring.new_data_key(), "master-key-check")
    assert not ring.verify_check_blob(wrapped)


# Master key text and ids


def test_master_key_encoding_round_trip(master):
    text = encode_master_key(master)
    assert base64.b64decode(text) == master
    assert parse_master_key(text) == master
    assert parse_master_key(f"  {text}\n") == master
    assert parse_master_key(text + "\r\n") == master


def test_generate_master_key():
    key = generate_master_key()
    assert len(key) == MASTER_KEY_BYTES == 32
    assert key != generate_master_key()


SECRETISH = "c2VjcmV0LWtleS1tYXRlcmlhbA"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        base64.b64encode(bytes(31)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.b64encode(bytes(16)).decode(),
        SECRETISH,  # missing padding
        SECRETISH + "!=",
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),
        "#### hunter2-is-no-key ####",
        encode_master_key(b"\xfb" * 32)[:20] + "\n" + encode_master_key(b"\xfb" * 32)[20:],
        "ключ" * 11,
    ],
)
def test_parse_master_key_rejects_malformed(text):
    with pytest.raises(ValueError) as excinfo:
        parse_master_key(text)
    message = str(excinfo.value)
    assert "master key" in message
    for chunk in re.findall(r"\S{4,}", text):
        assert chunk not in message
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__ or excinfo.value.__context__ is None


def test_encode_master_key_rejects_wrong_length():
    with pytest.raises(ValueError):
        encode_master_key(bytes(16))


def test_master_key_id_is_stable_and_domain_separated():
    key = bytes(range(32))
    expected = hashlib.sha256(b"phase_lite master key id\x00" + key).digest()[:8].hex()
    assert master_key_id(key) == expected == master_key_id(bytes(range(32)))
    assert re.fullmatch(r"[0-9a-f]{16}", master_key_id(key))
    assert master_key_id(key) != hashlib.sha256(key).hexdigest()[:16]
    assert master_key_id(key) != master_key_id(bytes(32))
    assert Keyring([key]).current_key_id == expected


# Errors never leak


def _leak_candidates(*secrets):
    for secret in secrets:
        yield secret
        yield secret.hex()
        yield base64.b64encode(secret)
        yield base64.b64encode(secret).decode()


def _assert_no_leak(exc, *secrets):
    rendered = [str(exc), repr(exc), *map(str, exc.args)]
    assert exc.args == ()
    for text in rendered:
        for candidate in _leak_candidates(*secrets):
            if isinstance(candidate, str):
                assert candidate not in text
            else:
                assert candidate.decode("latin-1") not in text
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def test_keyring_errors_carry_no_key_or_plaintext(ring, master):
    data_key = ring.new_data_key()
    blob = encrypt_field(data_key, PLAINTEXT, AAD)
    wrapped = ring.wrap_data_key(data_key, "app-1")
    failures = [
        lambda: decrypt_field(data_key, blob, field_aad("secrets", "row-9", "value")),
        lambda: decrypt_field(data_key, flip(blob, 5), AAD),
        lambda: decrypt_field(data_key, blob[:10], AAD),
        lambda: decrypt_text(data_key, encrypt_field(data_key, b"\xff" + PLAINTEXT, AAD), AAD),
        lambda: ring.unwrap_data_key(wrapped, "app-2"),
        lambda: ring.unwrap_data_key(flip(wrapped, 30), "app-1"),
        lambda: Keyring([generate_master_key()]).unwrap_data_key(wrapped, "app-1"),
        lambda: ring.wrapped_key_id(wrapped[:5]),
    ]
    for failure in failures:
        with pytest.raises(KeyringError) as excinfo:
            failure()
        _assert_no_leak(excinfo.value, data_key, master, PLAINTEXT)


def test_module_is_a_leaf():
    source = pathlib.Path(keyring.__file__).read_text(encoding="utf-8")
    imports = re.findall(r"^(?:from|import) (\S+)", source, re.MULTILINE)
    assert set(imports) <= {
        "base64",
        "functools",
        "hashlib",
        "os",
        "cryptography.exceptions",
        "cryptography.hazmat.primitives.ciphers.aead",
    }
