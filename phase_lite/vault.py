"""Keys in use: each app's data key and each environment's Phase key material.

Joins the leaf crypto modules to the store. The data key of an app is unwrapped with the master
key (``keyring``); an environment's seed and salt are decrypted with that data key and give the
environment's kx key pair and its keyDigest salt (``phase_crypto``). An environment's key
material is cached in process memory (which already holds the master key, so caching widens
nothing); a data key is unwrapped on each use. Nothing is written to disk.
"""

import threading
from dataclasses import dataclass

from . import keyring, phase_crypto
from .store import apps as app_store


class DecryptionFailed(Exception):
    """A stored ciphertext did not open (tampering, corruption or the wrong key)."""

    def __init__(self, table, row_id, field):
        super().__init__(f"cannot decrypt {table}.{field} of row {row_id}")
        self.table, self.row_id, self.field = table, row_id, field


@dataclass(frozen=True)
class EnvironmentKeys:
    environment_id: str
    app_id: str
    seed: str
    salt: str
    public_key: str
    private_key: str

    def digest(self, key: str) -> str:
        """Phase's keyDigest of a secret key name (upper-cased, as Phase stores keys)."""
        return phase_crypto.key_digest(key.upper(), self.salt)


class Vault:
    def __init__(self, db, ring: keyring.Keyring):
        self.db = db
        self.keyring = ring
        self._env_keys = {}
        self._lock = threading.Lock()

    # -- app data keys ---------------------------------------------------------------------

    def data_key(self, app_id: str) -> bytes:
        wrapped = app_store.get_wrapped_data_key(self.db, app_id)
        try:
            return self.keyring.unwrap_data_key(wrapped, app_id)
        except keyring.KeyringError:
            raise DecryptionFailed("apps", app_id, "wrapped_data_key") from None

    def new_wrapped_data_key(self, app_id: str) -> bytes:
        return self.keyring.wrap_data_key(self.keyring.new_data_key(), app_id)

    def encrypt(self, data_key: bytes, table: str, row_id: str, field: str, text: str) -> bytes:
        return keyring.encrypt_text(data_key, text, keyring.field_aad(table, row_id, field))

    def decrypt(self, data_key: bytes, table: str, row_id: str, field: str, blob: bytes) -> str:
        try:
            return keyring.decrypt_text(data_key, blob, keyring.field_aad(table, row_id, field))
        except keyring.KeyringError:
            raise DecryptionFailed(table, row_id, field) from None

    # -- environment key material ----------------------------------------------------------

    def seal_environment(self, data_key: bytes, env_id: str):
        """Make a new environment's seed and salt: (seed_enc, salt_enc, public_key)."""
        seed, salt = phase_crypto.generate_env_seed(), phase_crypto.generate_env_salt()
        public_key, _ = phase_crypto.env_keypair(seed)
        return (
            self.encrypt(data_key, "environments", env_id, "seed", seed),
            self.encrypt(data_key, "environments", env_id, "salt", salt),
            public_key,
        )

    def environment_keys(self, env_row) -> EnvironmentKeys:
        """Key material of an environment row (any row with the ENV_COLUMNS of the store)."""
        cached = self._env_keys.get(env_row["id"])
        if cached is not None and cached[0] == env_row["seed_enc"]:
            return cached[1]
        data_key = self.data_key(env_row["app_id"])
        seed = self.decrypt(data_key, "environments", env_row["id"], "seed", env_row["seed_enc"])
        salt = self.decrypt(data_key, "environments", env_row["id"], "salt", env_row["salt_enc"])
        public_key, private_key = phase_crypto.env_keypair(seed)
        keys = EnvironmentKeys(env_row["id"], env_row["app_id"], seed, salt, public_key,
                               private_key)
        with self._lock:
            self._env_keys[env_row["id"]] = (env_row["seed_enc"], keys)
        return keys

    def forget(self):
        """Drop cached key material (after a rotation)."""
        with self._lock:
            self._env_keys.clear()
