"""The SQL of secrets, folders, tags, versions and personal overrides, tested directly."""

import pytest

import support
from phase_lite.paths import folder_chain
from phase_lite.store import Conflict, new_id, now
from phase_lite.store import history as history_store
from phase_lite.store import secrets as store

pytestmark = pytest.mark.both_backends


@pytest.fixture
def env_id(demo):
    return demo[1]["Development"]["id"]


@pytest.fixture
def org_id(services):
    return support.organisation_id(services)


def insert(db, env_id, key_digest="d", path="/", stamp=None, **overrides):
    stamp = stamp or now()
    row = {"id": new_id(), "environment_id": env_id, "folder_id": None, "path": path,
           "key_digest": key_digest, "key_enc": b"k", "value_enc": b"v", "comment_enc": b"c",
           "wire_key": None, "wire_value": None, "wire_comment": None, "type": "secret",
           "version": 1, "created_at": stamp, "updated_at": stamp}
    row.update(overrides)
    with db.transaction():
        store.insert_secrets(db, [row])
    return row["id"]


def test_live_secrets_in_write_order_without_deleted(db, env_id, demo):
    first = insert(db, env_id, "a", stamp="2024-01-01T00:00:00.000000Z")
    second = insert(db, env_id, "b", stamp="2024-01-02T00:00:00.000000Z")
    tied = insert(db, env_id, "c", stamp="2024-01-02T00:00:00.000000Z")
    elsewhere = insert(db, demo[1]["Staging"]["id"], "a")
    with db.transaction():
        store.update_secret(db, first, {"updated_at": "2024-01-03T00:00:00.000000Z",
                                        "version": 2})
    assert [r["id"] for r in store.live_secrets(db, env_id)] == [second, tied, first]
    with db.transaction():
        store.soft_delete_secrets(db, [second], now())
    assert [r["id"] for r in store.live_secrets(db, env_id)] == [tied, first]
    assert elsewhere not in store.secrets_by_id(db, env_id, [elsewhere, first])
    assert set(store.secrets_by_id(db, env_id, [second, first])) == {first}
    assert set(store.secrets_by_id(db, env_id, [second, first], live_only=False)) == {
        first, second}


def test_update_secret_refuses_unknown_columns(db, env_id):
    secret_id = insert(db, env_id)
    with pytest.raises(ValueError):
        store.update_secret(db, secret_id, {"environment_id": "elsewhere"})


def test_live_positions(db, env_id):
    keep = insert(db, env_id, "x", path="/p")
    gone = insert(db, env_id, "x", path="/q")
    insert(db, env_id, "y")
    with db.transaction():
        store.soft_delete_secrets(db, [gone], now())
    assert [tuple(r) for r in store.live_positions(db, env_id, ["x", "z"])] == [(keep, "/p", "x")]


def test_many_ids_are_chunked(db, env_id):
    ids = [insert(db, env_id, str(i)) for i in range(3)]
    asked = ids + [new_id() for _ in range(1200)]
    assert set(store.secrets_by_id(db, env_id, asked)) == set(ids)


def test_folders_are_created_once_with_parents(db, env_id):
    with db.transaction():
        deepest = store.ensure_folders(db, env_id, folder_chain("/a/b/c"))
        again = store.ensure_folders(db, env_id, folder_chain("/a/b/c"))
        sibling = store.ensure_folders(db, env_id, folder_chain("/a/x"))
        root = store.ensure_folders(db, env_id, folder_chain("/"))
    assert deepest == again and root is None
    rows = {r["path"]: r for r in db.all("SELECT * FROM folders")}
    assert set(rows) == {"/a", "/a/b", "/a/b/c", "/a/x"}
    assert rows["/a/b/c"]["id"] == deepest and rows["/a/x"]["id"] == sibling
    assert rows["/a/x"]["parent_id"] == rows["/a"]["id"]
    assert (rows["/a/b/c"]["name"], rows["/a"]["parent_id"]) == ("c", None)


def test_tags_are_created_once_per_organisation(db, org_id, env_id):
    with db.transaction():
        first = store.ensure_tags(db, org_id, ["a", "b", "a"])
        second = store.ensure_tags(db, org_id, ["b", "c"])
    assert set(first) == {"a", "b"} and second["b"] == first["b"]
    assert first["a"][1] < first["b"][1] < second["c"][1]
    assert db.scalar("SELECT COUNT(*) FROM tags") == 3
    assert db.scalar("SELECT color FROM tags WHERE name = 'a'") == ""
    assert store.ensure_tags(db, org_id, []) == {}


def test_secret_tags_replace_and_read_in_creation_order(db, org_id, env_id):
    secret_id = insert(db, env_id)
    with db.transaction():
        ids = {name: tag_id for name, (tag_id, _) in
               store.ensure_tags(db, org_id, ["z", "a", "m"]).items()}
        store.replace_secret_tags(db, secret_id, [ids["m"], ids["z"], ids["m"]])
    assert store.tag_names_of(db, [secret_id]) == {secret_id: ["z", "m"]}
    assert [tuple(r) for r in store.live_secret_tags(db, env_id)] == [
        (secret_id, "z"), (secret_id, "m")]
    with db.transaction():
        store.replace_secret_tags(db, secret_id, [ids["a"]])
    assert store.tag_names_of(db, [secret_id]) == {secret_id: ["a"]}
    with db.transaction():
        store.replace_secret_tags(db, secret_id, [])
    assert store.tag_names_of(db, [secret_id]) == {}


def test_versions(db, env_id):
    secret_id = insert(db, env_id)
    rows = [{"id": new_id(), "secret_id": secret_id, "version": v, "event": event, "path": "/",
             "key_digest": "d", "key_enc": b"k", "value_enc": b"v", "comment_enc": b"c",
             "type": "secret", "tags": ("a", "b"), "created_at": now()}
            for v, event in ((1, "create"), (2, "update"))]
    with db.transaction():
        store.insert_versions(db, rows)
    listed = list(reversed(history_store.secret_versions(db, secret_id)))
    assert [(r["version"], r["event"], r["tags"]) for r in listed] == [
        (1, "create", '["a","b"]'), (2, "update", '["a","b"]')]
    with pytest.raises(Conflict), db.transaction():
        store.insert_versions(db, [dict(rows[0], event="rename")])


def test_personal_secrets(db, env_id, owner):
    user_id = db.scalar("SELECT user_id FROM tokens WHERE id = ?", (owner.id,))
    secret_id, other = insert(db, env_id, "a"), insert(db, env_id, "b")
    personal_id = new_id()
    with db.transaction():
        store.insert_personal_secret(db, {
            "id": personal_id, "secret_id": secret_id, "user_id": user_id, "value_enc": b"o",
            "wire_value": None, "is_active": 1, "created_at": now(), "updated_at": now()})
        store.update_personal_secret(db, personal_id, b"p", b"sealed ph:v1", False, now())
    row = store.personal_secrets(db, user_id, [secret_id, other])[secret_id]
    assert (row["value_enc"], row["wire_value"], row["is_active"]) == (b"p", b"sealed ph:v1", 0)
    assert set(store.environment_personal_secrets(db, user_id, env_id)) == {secret_id}
    with db.transaction():
        store.soft_delete_secrets(db, [secret_id], now())
    assert store.environment_personal_secrets(db, user_id, env_id) == {}
    with pytest.raises(Conflict), db.transaction():
        store.insert_personal_secret(db, {
            "id": new_id(), "secret_id": secret_id, "user_id": user_id, "value_enc": b"o",
            "wire_value": None, "is_active": 1, "created_at": now(), "updated_at": now()})


def test_organisation_of_environment(db, env_id, org_id):
    assert store.organisation_of_environment(db, env_id) == org_id
    assert store.organisation_of_environment(db, "missing") is None


def test_a_batch_of_secrets_returns_rowids_in_insertion_order(db, env_id):
    rows = [{"id": new_id(), "environment_id": env_id, "folder_id": None, "path": "/",
             "key_digest": f"d{n}", "key_enc": b"k", "value_enc": b"v", "comment_enc": b"c",
             "wire_key": None, "wire_value": None, "wire_comment": None, "type": "secret",
             "version": 1, "created_at": "2024-01-01T00:00:00.000000Z",
             "updated_at": "2024-01-01T00:00:00.000000Z"} for n in range(5)]
    with db.transaction():
        rowids = store.insert_secrets(db, rows)
    assert rowids == sorted(rowids) and len(set(rowids)) == 5
    assert [(row["id"], row["row_order"]) for row in store.live_secrets(db, env_id)] == \
        list(zip([row["id"] for row in rows], rowids))
