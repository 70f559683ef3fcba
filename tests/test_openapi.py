"""The OpenAPI document: every operation summarised and secured, errors shaped as Phase's."""

import pytest

PUBLIC_OPERATIONS = {("/", "get"), ("/health/", "get"), ("/v1/lockbox/{link_id}/", "get")}
METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}


@pytest.fixture
def document(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


@pytest.mark.parametrize("url", ["/openapi.json", "/service/public/openapi.json",
                                 "/public/openapi.json", "/service/openapi.json"])
def test_document_is_served_under_every_prefix(client, url, document):
    response = client.get(url)
    assert response.status_code == 200
    assert response.json == document
    assert document["openapi"].startswith("3.")


def test_every_operation_has_a_summary(document):
    missing = [(path, method) for path, method, operation in operations(document)
               if not operation.get("summary", "").strip()]
    assert missing == []


def test_every_operation_needs_the_bearer_token_except_the_public_ones(document):
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    default = document.get("security")
    for path, method, operation in operations(document):
        security = operation.get("security", default)
        if (path, method) in PUBLIC_OPERATIONS:
            assert security == [], (path, method)
        else:
            assert security == [{"bearer": []}], (path, method)
    assert {(p, m) for p, m, _ in operations(document)} >= PUBLIC_OPERATIONS


def test_errors_are_documented_as_phase_shapes_them(document):
    schemas = document["components"]["schemas"]
    error = schemas["Error"]
    assert (error["type"], error["required"]) == ("object", ["error"])
    assert list(error["properties"]) == ["error"]
    assert error["properties"]["error"]["type"] == "string"
    default_error = document["components"]["responses"]["DEFAULT_ERROR"]
    assert default_error["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}


def test_secrets_operations(document):
    item = document["paths"]["/v1/secrets/"]
    assert set(item) >= {"get", "post", "put", "delete"}
    assert not set(item) & {"patch", "head", "options", "trace"}
    error_ref = {"$ref": "#/components/schemas/Error"}
    for method in ("get", "post", "put", "delete"):
        responses = item[method]["responses"]
        for status in ("400", "401", "403", "404"):
            assert responses[status]["content"]["application/json"]["schema"] == error_ref
        assert "200" in responses
    assert item["post"]["responses"]["409"]["content"]["application/json"]["schema"] == error_ref
    secret_list = item["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert secret_list == {"type": "array", "items": {"$ref": "#/components/schemas/Secret"}}
    names = {p["name"] for p in item["get"]["parameters"]}
    assert names >= {"app_id", "env", "key", "path", "tags", "lease_ttl", "Environment"}
    for method, schema in (("post", "CreateSecrets"), ("put", "UpdateSecrets"),
                           ("delete", "DeleteSecrets")):
        body = item[method]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{schema}"}


def test_secret_schema_lists_phase_fields_in_order(document):
    secret = document["components"]["schemas"]["Secret"]
    assert list(secret["properties"]) == [
        "id", "key", "value", "comment", "tags", "override", "type", "lifecycle", "path",
        "keyDigest", "version", "createdAt", "updatedAt", "environment", "folder"]


def test_lockbox_operations_are_marked_extensions(document):
    created = document["paths"]["/v1/lockbox/"]["post"]
    opened = document["paths"]["/v1/lockbox/{link_id}/"]["get"]
    listed = document["paths"]["/v1/lockbox/"]["get"]
    revoked = document["paths"]["/v1/lockbox/shares/{share_id}/"]["delete"]
    assert set(document["paths"]["/v1/lockbox/shares/{share_id}/"]) == {"delete", "parameters"}
    for operation in (created, opened, listed, revoked):
        assert operation["x-phase-lite-extension"] is True
        assert operation["tags"] == ["phase_lite_extensions"]
        assert "429" in operation["responses"]
    assert set(created["responses"]) >= {"201", "400", "401"}
    assert set(opened["responses"]) >= {"200", "404"}
    assert set(listed["responses"]) >= {"200", "401"}
    assert set(revoked["responses"]) >= {"204", "401", "404"}
    assert "content" not in revoked["responses"]["204"]
    share_list = listed["responses"]["200"]["content"]["application/json"]["schema"]
    assert share_list == {"$ref": "#/components/schemas/LockboxShareList"}
    share = document["components"]["schemas"]["LockboxShare"]
    assert "ciphertext" not in share["properties"] and "link" not in share["properties"]
    body = created["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/NewLockboxShare"}
