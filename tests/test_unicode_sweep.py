"""Text that is not valid Unicode (a lone surrogate sent as the raw JSON escape ``\\ud800``) and
NUL, in every parameter and body field of every operation of the served OpenAPI document: never a
5xx, always Phase's error shape, and a refused request writes nothing."""

import json
from urllib.parse import quote

import pytest

from phase_lite import accounts
from phase_lite.store import accounts as account_store

import support

pytestmark = pytest.mark.both_backends

METHODS = ("get", "post", "put", "delete")
BAD_TEXT = ["x\ud800", "\udfff", "x\u0000y"]
BAD_QUERY = ["x%00", "%ED%A0%80", "%FF%FE", "\u0000"]
BAD_HEADER = ["x\u0000", "\u00ff\u00fe"]


@pytest.fixture
def world(client, owner_headers, demo, db, services):
    """Ids for every placeholder of every route, and a baseline body for every operation."""
    app, envs = demo
    org_id = accounts.organisation(db)["id"]
    roles = {row["name"]: row["id"] for row in account_store.list_roles(db, org_id)}
    sa, issued = support.make_service_account(services, "sweep")
    sa_id = sa["id"]
    url = f"/v1/secrets/?app_id={app['id']}&env=Development"
    created = client.post(url, headers=owner_headers, data=json.dumps(
        {"secrets": [{"key": "KEEP", "value": "v"}]}))
    secret_id = created.json[0]["id"]
    dev = envs["Development"]["id"]
    share = client.post("/v1/lockbox/", headers=owner_headers,
                        json={"ciphertext": "A" * 64, "views": 1})
    ids = {"app_id": app["id"], "env_id": envs["Staging"]["id"], "role_id": roles["Service"],
           "sa_id": sa_id, "token_id": issued.id, "secret_id": secret_id,
           "link_id": "A" * 43, "share_id": share.json["id"]}
    entry = {"key": "K", "value": "v", "comment": "c", "path": "/p", "tags": ["t"],
             "keyDigest": "d", "type": "secret", "override": {"value": "o", "isActive": True}}
    bodies = {
        ("post", "/v1/secrets/"): {"secrets": [entry]},
        ("put", "/v1/secrets/"): {"secrets": [dict(entry, id=secret_id)]},
        ("delete", "/v1/secrets/"): {"secrets": [secret_id]},
        ("post", "/secrets/"): {"secrets": [entry]},
        ("put", "/secrets/"): {"secrets": [dict(entry, id=secret_id)]},
        ("delete", "/secrets/"): {"secrets": [secret_id]},
        ("post", "/v1/secrets/{secret_id}/restore/"): {"version": 1},
        ("post", "/v1/lockbox/"): {"ciphertext": "A" * 64, "expiresIn": 3600, "views": 1},
        ("post", "/v1/apps/"): {"name": "n", "description": "d", "environments": ["E1"]},
        ("put", "/v1/apps/{app_id}/"): {"name": "n2", "description": "d"},
        ("post", "/v1/environments/"): {"name": "E2"},
        ("put", "/v1/environments/{env_id}/"): {"name": "E3"},
        ("post", "/v1/roles/"): {"name": "r", "description": "d", "color": "c",
                                 "permissions": {"x": "y"}},
        ("put", "/v1/roles/{role_id}/"): {"name": "r", "description": "d"},
        ("post", "/v1/service-accounts/"): {"name": "s", "role_id": roles["Service"],
                                            "token_name": "t"},
        ("put", "/v1/service-accounts/{sa_id}/"): {"name": "s2", "role_id": roles["Service"]},
        ("put", "/v1/service-accounts/{sa_id}/access/"): {
            "apps": [{"id": app["id"], "environments": [dev]}]},
        ("post", "/v1/service-accounts/{sa_id}/tokens/"): {
            "name": "t", "expires_at": "2099-01-01T00:00:00Z"},
    }
    query = {"app_id": app["id"], "env": "Development", "secret_id": secret_id, "key": "KEEP",
             "path": "/", "tags": "t", "lease_ttl": "60"}
    headers = {"Environment": dev, "KeyDigest": "d", "Path": "/"}
    return {"ids": ids, "bodies": bodies, "query": query, "headers": headers}


TABLES = {"sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
          "postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"}


def fingerprint(db):
    """Every row of every table, leaving out what reads themselves record."""
    state = {}
    for (table,) in db.all(TABLES[db.backend]):
        if table == "audit_read_sets":  # what read events name (m010)
            continue
        rows = [dict(row) for row in db.all(f"SELECT * FROM {table}")]
        if table == "audit_events":
            rows = [row for row in rows if not row["action"].startswith("secrets.read")]
        state[table] = sorted((tuple(sorted((name, value) for name, value in row.items()
                                            if name != "last_used_at")) for row in rows),
                              key=repr)
    return state


def operations(document):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method], item.get("parameters", [])


def resolve(schema, document):
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def schema_fields(schema, document, prefix=()):
    """Paths of every field a body schema names (``0`` for an array's items)."""
    schema = resolve(schema, document)
    if schema.get("type") == "array" or "items" in schema:
        yield prefix + (0,)
        yield from schema_fields(schema.get("items", {}), document, prefix + (0,))
    for name, field in schema.get("properties", {}).items():
        yield prefix + (name,)
        yield from schema_fields(field, document, prefix + (name,))


def value_fields(value, prefix=()):
    if isinstance(value, dict):
        for name, inner in value.items():
            yield prefix + (name,)
            yield from value_fields(inner, prefix + (name,))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield prefix + (index,)
            yield from value_fields(inner, prefix + (index,))


def replaced(body, path, bad):
    """A copy of ``body`` with ``bad`` at ``path`` (containers made as needed)."""
    body = json.loads(json.dumps(body))
    node = body
    for step, following in zip(path, path[1:]):
        fresh = [] if isinstance(following, int) else {}
        if isinstance(node, list):
            while len(node) <= step:
                node.append(fresh)
            if not isinstance(node[step], (dict, list)):
                node[step] = fresh
        elif not isinstance(node.get(step), (dict, list)):
            node[step] = fresh
        node = node[step]
    last = path[-1]
    if isinstance(node, list):
        while len(node) <= last:
            node.append(None)
    node[last] = bad
    return body


def cases(document, world):
    """(label, method, url, headers, raw body) for every field of every operation."""
    for path, method, operation, shared in operations(document):
        params = shared + operation.get("parameters", [])
        url_path = path.format(**world["ids"])
        query = {p["name"]: world["query"].get(p["name"], "x") for p in params
                 if p["in"] == "query"}
        headers = {p["name"]: world["headers"].get(p["name"], "x") for p in params
                   if p["in"] == "header" and p["name"] in world["headers"]}
        body = world["bodies"].get((method, path))
        schema = operation.get("requestBody", {}).get("content", {}).get(
            "application/json", {}).get("schema")

        def url(q, p=url_path):
            return p + ("?" + "&".join(f"{k}={v}" for k, v in q.items()) if q else "")

        raw = None if body is None else json.dumps(body)
        for param in params:
            name = param["name"]
            if param["in"] == "query":
                for bad in BAD_QUERY:
                    yield (f"{method} {path} ?{name}", method,
                           url(dict(query, **{name: bad})), headers, raw)
            elif param["in"] == "path":
                for bad in BAD_QUERY:
                    yield (f"{method} {path} {{{name}}}", method,
                           url(query, path.format(**dict(world["ids"], **{name: bad}))),
                           headers, raw)
            elif param["in"] == "header":
                for bad in BAD_HEADER:
                    yield (f"{method} {path} {name}:", method, url(query),
                           dict(headers, **{name: bad}), raw)
        if schema is None:
            continue
        fields = set(schema_fields(schema, document)) | set(value_fields(body or {}))
        fields.add(("\ud800",))  # a member name that is not text
        for field in sorted(fields, key=str):
            for bad in BAD_TEXT:
                yield (f"{method} {path} body {field}", method, url(query), headers,
                       json.dumps(replaced(body or {}, field, bad)))


def test_invalid_unicode_and_nul_never_give_5xx_nor_write(client, owner_headers, db, world):
    document = client.get("/openapi.json").json
    checked, failures = 0, []
    for label, method, url, headers, raw in cases(document, world):
        before = fingerprint(db)
        kwargs = {"headers": dict(owner_headers, **headers)}
        if raw is not None:
            kwargs.update(data=raw, content_type="application/json")
        response = getattr(client, method)(quote(url, safe="/?&=%{}"), **kwargs)
        checked += 1
        body = response.get_json(silent=True)
        if response.status_code >= 500 or (response.status_code >= 400 and (
                not isinstance(body, dict) or list(body) != ["error"])):
            failures.append((label, response.status_code, response.data[:200]))
        elif response.status_code >= 400 and fingerprint(db) != before:
            failures.append((label, "refused but wrote", response.status_code))
        elif response.status_code < 300 and raw and "\\ud800" in raw.lower():
            failures.append((label, "accepted a lone surrogate", response.status_code))
    assert checked > 400
    assert failures == []


def test_a_lone_surrogate_is_a_clear_400(client, owner_headers, db):
    for route in ("/v1/apps/", "/v1/service-accounts/"):
        response = client.post(route, headers=owner_headers, data='{"name": "x\\ud800"}',
                               content_type="application/json")
        assert response.status_code == 400
        assert "Unicode" in response.get_json()["error"]
