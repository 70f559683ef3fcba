"""The Terraform provider's requests (client-protocol.md §4.5) against a served phase_lite."""

import requests

import support


def call(server, token, method, query, body=None):
    # The provider builds query strings without URL-encoding and always sends JSON.
    headers = {"Authorization": f"Bearer {token.bearer_token}",
               "Content-Type": "application/json",
               "User-Agent": "terraform-provider-phase/0.2.0"}
    return requests.request(method, f"{server.url}/service/public/v1/secrets/?{query}",
                            json=body, headers=headers, timeout=10)


def test_terraform_resource_lifecycle(live_server, demo, make_service_token):
    app_row, envs = demo
    token = make_service_token(list(envs.values()), name="terraform")
    scope = f"app_id={app_row['id']}&env=Development"
    entry = {"key": "TF_SECRET", "value": "first", "comment": "managed by terraform",
             "path": "/tf/app", "tags": ["terraform"],
             "override": {"value": "", "isActive": False}}

    created = call(live_server, token, "POST", scope, {"secrets": [entry]})
    assert created.status_code == 200
    (item,) = created.json()
    secret_id = item["id"]
    assert (item["key"], item["value"], item["path"], item["version"]) == (
        "TF_SECRET", "first", "/tf/app", 1)

    read = call(live_server, token, "GET", f"{scope}&key=TF_SECRET")
    assert read.status_code == 200
    first = read.json()[0]
    assert first["id"] == secret_id
    for field in ("id", "key", "value", "comment", "path", "tags", "version", "keyDigest",
                  "createdAt", "updatedAt", "override"):
        assert field in first
    assert (first["tags"], first["override"]) == (["terraform"], None)

    conflict = call(live_server, token, "POST", scope, {"secrets": [entry]})
    assert (conflict.status_code, conflict.json()) == (409, {"error": "Duplicate secret found"})

    update = dict(entry, id=secret_id, value="second", tags=["terraform", "prod"])
    updated = call(live_server, token, "PUT", scope, {"secrets": [update]})
    assert updated.status_code == 200
    (after,) = updated.json()
    assert (after["value"], after["version"], sorted(after["tags"])) == (
        "second", 2, ["prod", "terraform"])

    # terraform import {app_id}:{env}:{path}:{key}
    imported = call(live_server, token, "GET", f"{scope}&path=/tf/app")
    assert [s["id"] for s in imported.json() if s["key"] == "TF_SECRET"] == [secret_id]
    # the data source reads everything and filters by path itself
    listed = call(live_server, token, "GET", scope)
    assert [s["id"] for s in listed.json() if s["path"] == "/tf/app"] == [secret_id]

    deleted = call(live_server, token, "DELETE", scope, {"secrets": [secret_id]})
    assert (deleted.status_code, deleted.json()) == (200, {"message": "Deleted 1 secret"})
    assert call(live_server, token, "GET", f"{scope}&key=TF_SECRET").json() == []
    assert "first" not in live_server.log_path.read_text()


def test_terraform_with_a_personal_access_token(live_server, demo, services):
    app_row, _ = demo
    _, token = support.make_user(services, "tf@example.com", "Admin")
    scope = f"app_id={app_row['id']}&env=Production"
    body = {"secrets": [{"key": "with_override", "value": "shared", "path": "/",
                         "override": {"value": "mine", "isActive": True}}]}
    (item,) = call(live_server, token, "POST", scope, body).json()
    (read,) = call(live_server, token, "GET", f"{scope}&key=WITH_OVERRIDE").json()
    assert read["override"]["id"] == item["override"]["id"]
    assert (read["override"]["value"], read["override"]["isActive"]) == ("mine", True)
    update = {"secrets": [{"id": item["id"], "key": "WITH_OVERRIDE", "value": "shared",
                           "comment": "", "path": "/", "tags": [],
                           "override": {"value": "mine", "isActive": False}}]}
    (after,) = call(live_server, token, "PUT", scope, update).json()
    assert after["override"]["isActive"] is False
