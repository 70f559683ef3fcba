"""``phase-lite lockbox``: list, revoke and purge as the local operator, audited."""

import json

import support
from phase_lite.store import audit as audit_store

create = support.lockbox_create
link_id = support.lockbox_link_id


def test_list_revoke_and_purge(run, client, owner_headers, db):
    assert run("lockbox", "list").output.strip() == "No shares."
    kept, revoked, expired = (create(client, owner_headers, views=2) for _ in range(3))
    db.execute("UPDATE lockbox_shares SET expires_at = '2000-01-01T00:00:00.000000Z'"
               " WHERE id = ?", (expired.json["id"],))
    listed = json.loads(run("lockbox", "list", "--json").output)["shares"]
    assert {s["id"]: (s["state"], s["viewsLeft"], s["views"]) for s in listed} == {
        kept.json["id"]: ("live", 2, 2), revoked.json["id"]: ("live", 2, 2),
        expired.json["id"]: ("expired", 0, 2)}
    assert all(s["creator"].startswith("user:") for s in listed)
    text = run("lockbox", "list").output
    assert kept.json["id"] in text and link_id(kept) not in text

    assert run("lockbox", "revoke", revoked.json["id"]).output.strip() == (
        f"Revoked share {revoked.json['id']}.")
    assert client.get(f"/v1/lockbox/{link_id(revoked)}/").status_code == 404
    missing = run("lockbox", "revoke", "00000000-0000-0000-0000-000000000000", ok=False)
    assert missing.exit_code == 1 and "Share not found." in missing.output

    assert run("lockbox", "purge").output.strip() == "Purged 1 expired share(s)."
    assert json.loads(run("lockbox", "purge", "--json").output) == {"purged": 0}
    assert client.get(f"/v1/lockbox/{link_id(kept)}/").status_code == 200
    events = [(e["action"], e["actor_type"], e["channel"])
              for e in audit_store.list_events(db, limit=100)]
    assert ("lockbox.revoke", "operator", "cli") in events
    assert ("lockbox.purge", "server", None) in events
