"""The only schema history. ``apply(db)`` is idempotent: applied migrations are recorded.

Conventions: ids are UUID4 text; timestamps are ISO-8601 UTC text with microseconds and ``Z``
(the form Phase renders, so reads need no conversion); ``*_enc`` columns are AES-256-GCM blobs
from ``keyring`` under the owning app's data key; ``wire_*`` columns hold Phase ``ph:v1``
ciphertexts to the environment's public key (what the Phase CLI/SDKs read), never plaintext,
themselves sealed like the ``*_enc`` columns (m003) so that they cannot be forged: stored as the
client sent them, or made on the first client read after a REST write (NULL until then, so REST
writes and imports pay no public-key encryption).

Migrations are SQL run through ``db.execute`` (no sqlite-utils table methods), in the dialect
both backends accept: ``store.postgres`` translates column types for PostgreSQL. Case-insensitive
uniqueness is an index on ``lower(column)``, not a column collation.
"""

import sqlite3

from sqlite_utils.migrations import Migrations

migrations = Migrations("phase_lite")


@migrations()
def m001_initial(db):
    _run_script(
        db,
        """
        CREATE TABLE meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );

        CREATE TABLE organisations (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        CREATE TABLE roles (
            id TEXT PRIMARY KEY,
            organisation_id TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            color TEXT NOT NULL DEFAULT '',
            is_default INTEGER NOT NULL DEFAULT 1,
            global_access INTEGER NOT NULL DEFAULT 0,
            permissions TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (organisation_id, name)
        );

        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            organisation_id TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
            email TEXT NOT NULL COLLATE NOCASE,
            role_id TEXT NOT NULL REFERENCES roles(id),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT,
            UNIQUE (organisation_id, email)
        );

        CREATE TABLE service_accounts (
            id TEXT PRIMARY KEY,
            organisation_id TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            role_id TEXT NOT NULL REFERENCES roles(id),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        );

        -- Personal access tokens (user_id) and service-account tokens (service_account_id).
        -- Only a SHA-256 of the 256-bit bearer is stored; the full token is shown once.
        CREATE TABLE tokens (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('user', 'service')),
            user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
            service_account_id TEXT REFERENCES service_accounts(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            public_key TEXT NOT NULL,
            wrapped_key_share TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT,
            last_used_at TEXT,
            revoked_at TEXT,
            CHECK ((user_id IS NULL) <> (service_account_id IS NULL))
        );

        CREATE TABLE apps (
            id TEXT PRIMARY KEY,
            organisation_id TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            wrapped_data_key BLOB NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        -- seed_enc/salt_enc: the Phase environment seed and salt (hex text), encrypted at rest.
        -- version goes up with every change to the environment's secrets (cache key, sync).
        CREATE TABLE environments (
            id TEXT PRIMARY KEY,
            app_id TEXT NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
            name TEXT NOT NULL COLLATE NOCASE,
            env_type TEXT NOT NULL,
            sort_index INTEGER NOT NULL,
            seed_enc BLOB NOT NULL,
            salt_enc BLOB NOT NULL,
            public_key TEXT NOT NULL,
            version INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (app_id, name)
        );

        -- Which account may use which environment (Phase's EnvironmentKey rows).
        CREATE TABLE environment_access (
            id TEXT PRIMARY KEY,
            environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
            user_id TEXT REFERENCES users(id) ON DELETE CASCADE,
            service_account_id TEXT REFERENCES service_accounts(id) ON DELETE CASCADE,
            created_at TEXT NOT NULL,
            CHECK ((user_id IS NULL) <> (service_account_id IS NULL))
        );
        CREATE UNIQUE INDEX environment_access_user
            ON environment_access (environment_id, user_id) WHERE user_id IS NOT NULL;
        CREATE UNIQUE INDEX environment_access_sa
            ON environment_access (environment_id, service_account_id)
            WHERE service_account_id IS NOT NULL;
        CREATE INDEX environment_access_by_sa ON environment_access (service_account_id);
        CREATE INDEX environment_access_by_user ON environment_access (user_id);

        CREATE TABLE folders (
            id TEXT PRIMARY KEY,
            environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
            parent_id TEXT REFERENCES folders(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            path TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (environment_id, path)
        );

        CREATE TABLE tags (
            id TEXT PRIMARY KEY,
            organisation_id TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            color TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            UNIQUE (organisation_id, name)
        );

        CREATE TABLE secrets (
            id TEXT PRIMARY KEY,
            environment_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
            folder_id TEXT REFERENCES folders(id),
            path TEXT NOT NULL,
            key_digest TEXT NOT NULL,
            key_enc BLOB NOT NULL,
            value_enc BLOB NOT NULL,
            comment_enc BLOB NOT NULL,
            wire_key TEXT,
            wire_value TEXT,
            wire_comment TEXT,
            type TEXT NOT NULL DEFAULT 'secret',
            version INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        );
        CREATE INDEX secrets_live_lookup
            ON secrets (environment_id, key_digest, path) WHERE deleted_at IS NULL;
        CREATE INDEX secrets_by_environment ON secrets (environment_id, deleted_at);

        CREATE TABLE secret_tags (
            secret_id TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
            tag_id TEXT NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
            PRIMARY KEY (secret_id, tag_id)
        ) WITHOUT ROWID;
        CREATE INDEX secret_tags_by_tag ON secret_tags (tag_id);

        -- Every version of every secret, as an encrypted snapshot (history and rollback).
        CREATE TABLE secret_versions (
            id TEXT PRIMARY KEY,
            secret_id TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            event TEXT NOT NULL CHECK (event IN ('create', 'update', 'delete')),
            path TEXT NOT NULL,
            key_digest TEXT NOT NULL,
            key_enc BLOB NOT NULL,
            value_enc BLOB NOT NULL,
            comment_enc BLOB NOT NULL,
            type TEXT NOT NULL,
            tags TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX secret_versions_by_secret ON secret_versions (secret_id, version);

        CREATE TABLE personal_secrets (
            id TEXT PRIMARY KEY,
            secret_id TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            value_enc BLOB NOT NULL,
            wire_value TEXT,
            is_active INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (secret_id, user_id)
        );

        -- Audit log: writes are recorded in the same transaction as the change; a read is one
        -- event per request. details is JSON (ids and versions), never a secret value.
        CREATE TABLE audit_events (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            organisation_id TEXT,
            actor_type TEXT NOT NULL,
            actor_id TEXT,
            token_id TEXT,
            action TEXT NOT NULL,
            resource_type TEXT NOT NULL,
            resource_id TEXT,
            app_id TEXT,
            environment_id TEXT,
            details TEXT NOT NULL DEFAULT '{}',
            ip_address TEXT,
            user_agent TEXT
        );
        CREATE INDEX audit_events_by_time ON audit_events (created_at);
        CREATE INDEX audit_events_by_env ON audit_events (environment_id, created_at);
        """
    )


@migrations()
def m002_audit_channel(db):
    # Which door a change came through ("api", "cli", "console"); NULL for older events.
    db.execute("ALTER TABLE audit_events ADD COLUMN channel TEXT")


@migrations()
def m003_seal_wire_ciphertexts(db):
    """``wire_*`` values are now sealed under the app's data key (bound to table, row and
    column): the unsealed ones are dropped. They are a cache of the ``*_enc`` columns, made
    again from the server-side value on the next client read (client-written ones included:
    the server keeps the plaintext of every field a client sends)."""
    _run_script(
        db,
        """
        UPDATE secrets SET wire_key = NULL, wire_value = NULL, wire_comment = NULL;
        UPDATE personal_secrets SET wire_value = NULL;
        """,
    )


@migrations()
def m004_console_sessions(db):
    _run_script(
        db,
        """
        -- Console sign-in: an Argon2id hash per user (PyNaCl's $argon2id$ string).
        CREATE TABLE user_passwords (
            user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
            password_hash TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );

        -- Console sessions: only a SHA-256 of the cookie's random id is stored.
        CREATE TABLE console_sessions (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            session_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            ended_at TEXT,
            ip_address TEXT,
            user_agent TEXT
        );
        CREATE INDEX console_sessions_by_user ON console_sessions (user_id);

        -- One-time links to choose a password: the owner's first sign-in and invitations.
        CREATE TABLE console_links (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('setup', 'invite')),
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            link_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT
        );
        """
    )


@migrations()
def m005_explicit_case_folding(db):
    # Names that differ only in ASCII case are one name. SQLite's NOCASE columns said so
    # implicitly; these indexes say it on every backend (lookups use lower(column) = ?).
    _run_script(
        db,
        """
        CREATE UNIQUE INDEX users_by_folded_email ON users (organisation_id, lower(email));
        CREATE UNIQUE INDEX environments_by_folded_name ON environments (app_id, lower(name));
        """
    )


@migrations()
def m006_wire_columns_hold_bytes(db):
    # The sealed wire ciphertexts (m003) are bytes: SQLite keeps them in the TEXT columns as
    # they are, PostgreSQL needs the columns to say so (m003 left them all NULL).
    if getattr(db, "backend", "sqlite") != "postgresql":
        return
    for table, column in (("secrets", "wire_key"), ("secrets", "wire_value"),
                          ("secrets", "wire_comment"), ("personal_secrets", "wire_value")):
        db.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE BLOB USING NULL")


def _run_script(db, script):
    # executescript() would COMMIT the migration's transaction; run statement by statement.
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""


def apply(db):
    """Apply every pending migration (harmless when there are none)."""
    migrations.apply(db)


@migrations()
def m007_secret_version_events(db):
    """Give each secret version its event in full (``restore`` added) and its actor.

    SQLite cannot change a CHECK constraint, so the table is rebuilt with the same row ids
    (the keyring binds each ciphertext to its row id). Existing versions take their actor from
    the audit event that wrote them, where the audit log still holds it; otherwise the actor
    stays NULL (not known). PostgreSQL changes the constraint in place and reads the audit
    details as jsonb.
    """
    if getattr(db, "backend", "sqlite") == "postgresql":
        _run_script(db, _VERSION_EVENTS_POSTGRES)
        return
    _run_script(
        db,
        """
        -- actor_type is the audit log's: 'user', 'service' (service account) or 'cli' (the
        -- local admin command); restored_from is the version a 'restore' copied.
        CREATE TABLE secret_versions_new (
            id TEXT PRIMARY KEY,
            secret_id TEXT NOT NULL REFERENCES secrets(id) ON DELETE CASCADE,
            version INTEGER NOT NULL,
            event TEXT NOT NULL CHECK (event IN ('create', 'update', 'delete', 'restore')),
            restored_from INTEGER,
            actor_type TEXT,
            actor_id TEXT,
            path TEXT NOT NULL,
            key_digest TEXT NOT NULL,
            key_enc BLOB NOT NULL,
            value_enc BLOB NOT NULL,
            comment_enc BLOB NOT NULL,
            type TEXT NOT NULL,
            tags TEXT NOT NULL,
            created_at TEXT NOT NULL
        );

        INSERT INTO secret_versions_new (id, secret_id, version, event, path, key_digest,
            key_enc, value_enc, comment_enc, type, tags, created_at)
        SELECT id, secret_id, version, event, path, key_digest, key_enc, value_enc,
            comment_enc, type, tags, created_at
        FROM secret_versions ORDER BY rowid;

        WITH writes AS (
            SELECT e.action, e.actor_type, e.actor_id,
                json_extract(j.value, '$.id') AS secret_id,
                json_extract(j.value, '$.version') AS version
            FROM audit_events e, json_each(e.details, '$.secrets') j
            WHERE e.action IN ('secrets.create', 'secrets.update', 'secrets.delete')
                AND json_type(j.value) = 'object'
        )
        UPDATE secret_versions_new SET actor_type = w.actor_type, actor_id = w.actor_id
        FROM writes w
        WHERE w.secret_id = secret_versions_new.secret_id
            AND w.version = secret_versions_new.version
            AND w.action = 'secrets.' || secret_versions_new.event;

        DROP TABLE secret_versions;
        ALTER TABLE secret_versions_new RENAME TO secret_versions;
        CREATE INDEX secret_versions_by_secret ON secret_versions (secret_id, version);
        """
    )


_VERSION_EVENTS_POSTGRES = """
ALTER TABLE secret_versions DROP CONSTRAINT IF EXISTS secret_versions_event_check;
ALTER TABLE secret_versions ADD CONSTRAINT secret_versions_event_check
    CHECK (event IN ('create', 'update', 'delete', 'restore'));
ALTER TABLE secret_versions ADD COLUMN restored_from INTEGER;
ALTER TABLE secret_versions ADD COLUMN actor_type TEXT;
ALTER TABLE secret_versions ADD COLUMN actor_id TEXT;
UPDATE secret_versions SET actor_type = e.actor_type, actor_id = e.actor_id
FROM audit_events e, jsonb_array_elements(CASE
        WHEN jsonb_typeof(CAST(e.details AS jsonb) -> 'secrets') = 'array'
        THEN CAST(e.details AS jsonb) -> 'secrets' ELSE CAST('[]' AS jsonb) END) j
WHERE e.action IN ('secrets.create', 'secrets.update', 'secrets.delete')
    AND jsonb_typeof(j) = 'object'
    AND j ->> 'id' = secret_versions.secret_id
    AND CAST(j ->> 'version' AS INTEGER) = secret_versions.version
    AND e.action = 'secrets.' || secret_versions.event;
"""


@migrations()
def m008_lockbox_shares(db):
    _run_script(
        db,
        """
        -- Lockbox: one value shared by link. The browser encrypts it with a key that stays in
        -- the link's fragment; the server keeps the ciphertext (NULL once the share is gone:
        -- viewed out, expired or revoked), never the key. The link's id is a bearer
        -- capability: only its SHA-256 is stored; the row's own id names it in lists,
        -- revocations and the audit log.
        CREATE TABLE lockbox_shares (
            id TEXT PRIMARY KEY,
            organisation_id TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
            link_hash TEXT NOT NULL UNIQUE,
            creator_type TEXT NOT NULL CHECK (creator_type IN ('user', 'service')),
            creator_id TEXT NOT NULL,
            ciphertext BLOB,
            max_views INTEGER NOT NULL,
            views_left INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            ended_at TEXT,
            end_reason TEXT CHECK (end_reason IN ('viewed', 'expired', 'revoked'))
        );
        CREATE INDEX lockbox_shares_by_creator ON lockbox_shares (creator_type, creator_id);
        CREATE INDEX lockbox_shares_live_by_expiry ON lockbox_shares (expires_at)
            WHERE ciphertext IS NOT NULL;
        """
    )


@migrations()
def m009_data_key_rotated_at(db):
    """When each app's data key was last replaced (``phase-lite keys rotate-app``); NULL while
    the app still has the key it was created with. Earlier rotations are taken from their audit
    events, where the audit log still holds them. The same statements serve PostgreSQL."""
    _run_script(
        db,
        """
        ALTER TABLE apps ADD COLUMN data_key_rotated_at TEXT;
        UPDATE apps SET data_key_rotated_at = (
            SELECT MAX(e.created_at) FROM audit_events e
            WHERE e.action = 'rotate_data_key' AND e.resource_type = 'app'
                AND e.resource_id = apps.id);
        """
    )


@migrations()
def m010_audit_read_sets(db):
    """Read events name the secrets they returned, and the same answer is read again and
    again (every deploy and ``phase run`` reads the same 100 secrets): the list is stored once
    per distinct content, in ``audit_read_sets``, and each read event written by the read log
    points to it (``read_set_id``; its own ``details`` stays ``{}``). A read event of 100
    secrets was a 4 KB row; it is now a row of ids. Events written before keep their details
    inline. A set is kept while any event naming it is: ``last_used_at`` is the time of the
    newest such event, and retention deletes sets last used before its cutoff with the
    events. The same statements serve PostgreSQL."""
    _run_script(
        db,
        """
        CREATE TABLE audit_read_sets (
            id TEXT PRIMARY KEY, -- SHA-256 (hex) of details
            details TEXT NOT NULL,
            last_used_at TEXT NOT NULL
        );
        CREATE INDEX audit_read_sets_by_last_use ON audit_read_sets (last_used_at);
        ALTER TABLE audit_events ADD COLUMN read_set_id TEXT;
        """
    )


@migrations()
def m012_backup_event_counts(db):
    """The ``backup`` and ``restore`` events counted what they copied at the top of their
    details, so their ``"secrets"`` was a number where every other event's is the list of
    secrets it names (and the audit readers failed on it): the counts move under
    ``"counts"``. PostgreSQL reads the details as jsonb."""
    if getattr(db, "backend", "sqlite") == "postgresql":
        db.execute(
            """
            UPDATE audit_events SET details = CAST(
                (CAST(details AS jsonb) - 'apps' - 'environments' - 'secrets')
                || jsonb_build_object('counts', jsonb_build_object(
                    'apps', CAST(details AS jsonb) -> 'apps',
                    'environments', CAST(details AS jsonb) -> 'environments',
                    'secrets', CAST(details AS jsonb) -> 'secrets')) AS TEXT)
            WHERE action IN ('backup', 'restore') AND resource_type = 'database'
                AND jsonb_typeof(CAST(details AS jsonb) -> 'secrets') = 'number'
            """
        )
        return
    db.execute(
        """
        UPDATE audit_events SET details = json_set(
            json_remove(details, '$.apps', '$.environments', '$.secrets'), '$.counts',
            json_object('apps', json_extract(details, '$.apps'),
                        'environments', json_extract(details, '$.environments'),
                        'secrets', json_extract(details, '$.secrets')))
        WHERE action IN ('backup', 'restore') AND resource_type = 'database'
            AND json_type(details, '$.secrets') = 'integer'
        """
    )


@migrations()
def m013_mirror_sources(db):
    """Mirrors of Phase hosts (``phase-lite mirror``): a source is a host and a token whose
    readable apps are copied here, one-way. The token is encrypted under a data key of the
    source's own, wrapped by the master key as an app's is (bound to ``mirror:<id>``). A
    mirrored app names its source and its id there (its environments theirs), and no door
    writes to it but the sync. The same statements serve PostgreSQL."""
    _run_script(
        db,
        """
        CREATE TABLE mirror_sources (
            id TEXT PRIMARY KEY,
            organisation_id TEXT NOT NULL REFERENCES organisations(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            host TEXT NOT NULL,
            api_base TEXT NOT NULL, -- the URL of the client protocol that answered
            wrapped_key BLOB NOT NULL,
            token_enc BLOB NOT NULL,
            token_kind TEXT NOT NULL CHECK (token_kind IN ('user', 'service')),
            apps TEXT NOT NULL, -- JSON list of the app names or ids chosen, [] for all
            environments TEXT NOT NULL, -- JSON list of the environment names chosen, [] for all
            local_name TEXT, -- the local name of the one app chosen (option as)
            created_at TEXT NOT NULL,
            last_attempt_at TEXT,
            last_success_at TEXT,
            last_error TEXT,
            failures INTEGER NOT NULL DEFAULT 0,
            next_run_at TEXT,
            counts TEXT NOT NULL DEFAULT '{}'
        );
        CREATE UNIQUE INDEX mirror_sources_by_name ON mirror_sources (organisation_id, name);
        ALTER TABLE apps ADD COLUMN mirror_source_id TEXT REFERENCES mirror_sources(id);
        ALTER TABLE apps ADD COLUMN mirror_app_id TEXT;
        ALTER TABLE environments ADD COLUMN mirror_env_id TEXT;
        """
    )


@migrations()
def m014_mirror_overrides_and_removals(db):
    """Mirrors: whose personal overrides a personal token brings (the local user its overrides
    are kept for), and apps or environments the source no longer gives (removed there, or no
    longer readable by the token): their secrets are deleted here, kept in history, and the
    copy stays, marked, read-only. The same statements serve PostgreSQL."""
    _run_script(
        db,
        """
        ALTER TABLE mirror_sources ADD COLUMN overrides_user_id TEXT REFERENCES users(id);
        ALTER TABLE apps ADD COLUMN mirror_removed_at TEXT;
        ALTER TABLE environments ADD COLUMN mirror_removed_at TEXT;
        """
    )
