"""The clients' ph:v1 ciphertexts at rest (``wire_*`` columns) are sealed under the app's data key:
whoever can write the database file or a backup cannot forge a value the Phase CLI would trust,
and a changed stored ciphertext is refused on every route, never served."""

import json

import pytest

from support import SECRETS_URL, Session, opened, wire_rows
from phase_lite import migrations, phase_crypto
from phase_lite.backup import BackupError, create_backup, verify_backup
from phase_lite.rotation import rotate_app_key

INTERNAL = {"error": "Internal server error."}


@pytest.fixture
def client_session(client, sa_token):
    return Session.open(client, sa_token)


@pytest.fixture
def written(client, client_session, db):
    """A secret written by a client (its ciphertexts kept as its wire columns)."""
    response = client.post(SECRETS_URL, headers=client_session.headers(),
                           data=json.dumps({"secrets": [client_session.entry("API", "real")]}))
    assert response.status_code == 200
    return db.one("SELECT * FROM secrets")


def forge(db, column, value, row_id):
    with db.transaction():
        db.execute(f"UPDATE secrets SET {column} = ? WHERE id = ?", (value, row_id))


def test_a_forged_wire_value_is_never_served(client, client_session, db, demo, written):
    # The attacker knows the environment's public key: it is stored in plaintext.
    public_key = db.scalar("SELECT public_key FROM environments WHERE id = ?",
                           (written["environment_id"],))
    forge(db, "wire_value", phase_crypto.encrypt_asymmetric("attacker", public_key),
          written["id"])
    response = client.get(SECRETS_URL, headers=client_session.headers())
    assert (response.status_code, response.get_json()) == (500, INTERNAL)


def test_a_wire_value_moved_from_another_row_is_never_served(client, client_session, db,
                                                            written):
    client.post(SECRETS_URL, headers=client_session.headers(),
                data=json.dumps({"secrets": [client_session.entry("OTHER", "x")]}))
    other = db.one("SELECT * FROM secrets WHERE id != ?", (written["id"],))
    forge(db, "wire_value", other["wire_value"], written["id"])
    response = client.get(SECRETS_URL, headers=client_session.headers())
    assert response.status_code == 500


def test_a_tampered_stored_value_fails_on_both_routes(client, client_session, db, demo,
                                                      written, sa_headers, app_with):
    wire_rows(client, client_session)  # the client route has read it once: wire forms stored
    blob = bytearray(written["value_enc"])
    blob[-1] ^= 1
    forge(db, "value_enc", bytes(blob), written["id"])
    # A server that has not read the environment since (a restart; both routes read one
    # decrypted snapshot per environment version, opened from the stored fields).
    fresh = app_with().test_client()
    wire = fresh.get(SECRETS_URL, headers=client_session.headers())
    assert (wire.status_code, wire.get_json()) == (500, INTERNAL)
    rest = fresh.get(f"/v1/secrets/?app_id={demo[0]['id']}&env=Development",
                     headers=sa_headers)
    assert (rest.status_code, rest.get_json()) == (500, INTERNAL)


def test_backups_with_a_forged_wire_value_fail_verification(client, db, services, written,
                                                             tmp_path):
    forge(db, "wire_key", b"not sealed", written["id"])
    with pytest.raises(BackupError, match="wire_key"):
        create_backup(db, services.keyring, tmp_path / "backup.sqlite3")
    forge(db, "wire_key", None, written["id"])  # a missing wire form is refilled: fine
    summary = create_backup(db, services.keyring, tmp_path / "ok.sqlite3")
    assert verify_backup(tmp_path / "ok.sqlite3", services.keyring).fields == summary.fields


def test_clients_still_read_what_they_wrote(client, client_session, written):
    rows = wire_rows(client, client_session)
    assert opened(client_session, rows) == {"API": ("real", "", "/")}


def test_rotate_app_re_encrypts_the_wire_columns(client, client_session, db, demo, services,
                                                 written):
    before = wire_rows(client, client_session)
    rotate_app_key(db, services.vault, demo[0]["id"])
    after_row = db.one("SELECT * FROM secrets")
    assert after_row["wire_value"] != written["wire_value"]
    services.vault.forget()
    assert wire_rows(client, client_session) == before


def test_the_migration_drops_unsealed_wire_values_and_reads_refill_them(
        client, client_session, db, written):
    # A database from before sealing holds the bare ph:v1 strings.
    forge(db, "wire_value", client_session.entry("API", "real")["value"], written["id"])
    migrations.m003_seal_wire_ciphertexts(db.utils())
    assert db.scalar("SELECT wire_value FROM secrets") is None
    rows = wire_rows(client, client_session)
    assert opened(client_session, rows) == {"API": ("real", "", "/")}
    assert db.scalar("SELECT wire_value FROM secrets") is not None
