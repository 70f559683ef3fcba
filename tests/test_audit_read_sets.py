"""Read events keep the list of secrets they returned once per distinct content
(``audit_read_sets``, m010): every read is still one event naming what it returned, in the
admin command's and the console's audit lists alike, and retention deletes a list with the last
event naming it."""

import json

import pytest

from phase_lite import audit
from phase_lite.store import audit as audit_store
from phase_lite.store.audit import EVENTS

import support
from support import run_json

pytestmark = pytest.mark.both_backends

OLD = "2000-01-01T00:00:00.000000Z"
NEWER = "2000-06-01T00:00:00.000000Z"


def read_events(db):
    return db.all(f"SELECT id, token_id, details FROM {EVENTS}"
                  " WHERE action = 'secrets.read' ORDER BY id")


def stored_sets(db):
    return {row["id"]: (json.loads(row["details"]), row["last_used_at"])
            for row in db.all("SELECT * FROM audit_read_sets")}


def test_repeated_reads_store_their_list_once(pat, sa, services, db):
    ids = [item["id"] for item in pat.secrets("POST", [
        {"key": f"K{n}", "value": str(n)} for n in range(100)])]
    for _ in range(30):
        assert pat.get().status_code == 200
        assert sa.get().status_code == 200  # another token: another cached answer, same list
    services.read_log.flush()
    events = read_events(db)
    assert len(events) == 60
    assert {event["token_id"] for event in events} == {
        db.scalar("SELECT id FROM tokens WHERE user_id IS NOT NULL"),
        db.scalar("SELECT id FROM tokens WHERE service_account_id IS NOT NULL")}
    assert all(json.loads(event["details"]) == {"secrets": ids} for event in events)
    [(details, _)] = stored_sets(db).values()
    assert details == {"secrets": ids}
    # Each event row holds a reference, not the list.
    assert db.scalar("SELECT count(*) FROM audit_events WHERE action = 'secrets.read'"
                     " AND details = '{}' AND read_set_id IS NOT NULL") == 60


def test_different_answers_have_their_own_lists(pat, services, db):
    ids = [item["id"] for item in pat.secrets("POST", [
        {"key": "A", "value": "1"}, {"key": "B", "value": "2"}])]
    for params in ({}, {"key": "A"}, {"key": "B"}, {"key": "NONE"}, {"key": "A"}, {}):
        assert pat.get(**params).status_code == 200
    services.read_log.flush()
    listed = [json.loads(event["details"])["secrets"] for event in read_events(db)]
    assert listed == [ids, ids[:1], ids[1:], [], ids[:1], ids]
    assert sorted(details["secrets"] for details, _ in stored_sets(db).values()) == sorted(
        [ids, ids[:1], ids[1:], []])


def test_the_audit_lists_show_each_reads_secrets(pat, services, run, owner_client):
    ids = [item["id"] for item in pat.secrets("POST", [{"key": "LISTED", "value": "1"}])]
    assert pat.get().status_code == 200
    services.read_log.flush()
    [read] = [event for event in run_json(run, "audit", "list")
              if event["action"] == "secrets.read"]
    assert read["details"] == {"secrets": ids}
    assert read["names"][ids[0]] == "LISTED"
    page = owner_client.get("/console/audit/?event=secrets.read")
    assert page.status_code == 200
    assert "LISTED" in page.get_data(as_text=True)


def events_at(services, details, *times):
    operator = support.operator(services)
    return [dict(audit.event(operator, "secrets.read", "secret", details=details),
                 created_at=moment) for moment in times]


def test_a_list_is_kept_while_an_event_names_it(services, db):
    kept, dropped = {"secrets": ["kept"]}, {"secrets": ["dropped"]}
    with db.transaction(bookkeeping=True):
        audit_store.insert_read_events(db, events_at(services, kept, OLD, NEWER, OLD)
                                       + events_at(services, dropped, OLD))
    with db.transaction(bookkeeping=True):  # an older event later: the last use stays
        audit_store.insert_read_events(db, events_at(services, kept, OLD))
    assert sorted(stored_sets(db).values(), key=repr) == sorted(
        [(dropped, OLD), (kept, NEWER)], key=repr)

    with db.transaction():
        assert audit_store.delete_events_before(db, "2000-03-01T00:00:00.000000Z") == 4
    assert list(stored_sets(db).values()) == [(kept, NEWER)]
    assert [json.loads(event["details"]) for event in read_events(db)] == [kept]

    assert audit.prune(db, 1) == 1  # the newer event too, now: its list goes with it
    assert stored_sets(db) == {}


def test_events_written_before_read_sets_keep_their_details(services, db):
    details = {"secrets": ["inline"]}
    with db.transaction():
        audit_store.insert_events(db, events_at(services, details, NEWER))
    assert [json.loads(event["details"]) for event in read_events(db)] == [details]
    [row] = [row for row in audit_store.list_events(db) if row["action"] == "secrets.read"]
    assert json.loads(row["details"]) == details
    assert stored_sets(db) == {}
