"""A fresh server configured over HTTP with nothing but the Owner's token, then used."""

import importlib.util

import pytest
import requests

pytestmark = pytest.mark.both_backends

SECRETS_API = importlib.util.find_spec("phase_lite.api.secrets") is not None


class Client:
    """requests against the self-hosted prefix, answering (status, JSON body or None)."""

    def __init__(self, server):
        self.base = f"{server.url}/service/public/v1"

    def __call__(self, method, path, bearer, **kwargs):
        response = requests.request(method, self.base + path, timeout=10,
                                    headers={"Authorization": f"Bearer {bearer}"}, **kwargs)
        return response.status_code, (response.json() if response.content else None)


def set_up(api, owner):
    """Two apps, a custom environment, two service accounts and a rotated token."""
    status, billing = api("POST", "/apps/", owner,
                          json={"name": "billing", "description": "Billing service"})
    assert status == 201
    status, shop = api("POST", "/apps/", owner, json={"name": "shop"})
    assert status == 201
    status, qa = api("POST", "/environments/", owner, params={"app_id": shop["id"]},
                     json={"name": "qa"})
    assert (status, qa["envType"], qa["index"]) == (201, "custom", 3)

    status, roles = api("GET", "/roles/", owner)
    service_role = next(role for role in roles["data"] if role["name"] == "Service")

    status, deployer = api("POST", "/service-accounts/", owner,
                           json={"name": "billing-deployer", "role_id": service_role["id"],
                                 "token_name": "ci"})
    assert status == 201
    status, _ = api("PUT", f"/service-accounts/{deployer['id']}/access/", owner, json={"apps": [
        {"id": billing["id"], "environments": [e["id"] for e in billing["environments"]]}]})
    assert status == 200
    status, tester = api("POST", "/service-accounts/", owner,
                         json={"name": "shop-qa", "role_id": service_role["id"]})
    assert status == 201
    status, _ = api("PUT", f"/service-accounts/{tester['id']}/access/", owner,
                    json={"apps": [{"id": shop["id"], "environments": [qa["id"]]}]})
    assert status == 200

    status, rotated = api("POST", f"/service-accounts/{deployer['id']}/tokens/", owner,
                          json={"name": "rotated", "expires_in": 86400})
    assert status == 201
    assert api("GET", "/apps/", rotated["bearerToken"])[0] == 200
    status, _ = api("DELETE", f"/service-accounts/{deployer['id']}/tokens/{rotated['id']}/",
                    owner)
    assert status == 204
    return {"billing": billing, "shop": shop, "qa": qa, "deployer": deployer,
            "tester": tester, "rotated": rotated}


def test_fresh_server_is_configured_over_http(live_server):
    api = Client(live_server)
    owner = live_server.owner.bearer_token
    made = set_up(api, owner)
    deployer, tester = made["deployer"], made["tester"]
    deployer_token = deployer["initialToken"]["bearerToken"]
    tester_token = tester["initialToken"]["bearerToken"]

    status, detail = api("GET", f"/service-accounts/{deployer['id']}/", owner)
    assert [t["name"] for t in detail["tokens"]] == ["ci"]
    assert [(a["name"], [e["name"] for e in a["environments"]]) for a in detail["apps"]] == [
        ("billing", ["Development", "Staging", "Production"])]
    status, detail = api("GET", f"/service-accounts/{tester['id']}/", owner)
    assert [(a["name"], [e["name"] for e in a["environments"]]) for a in detail["apps"]] == [
        ("shop", ["qa"])]

    assert [a["name"] for a in api("GET", "/apps/", owner)[1]["data"]] == ["shop", "billing"]
    assert [a["name"] for a in api("GET", "/apps/", deployer_token)[1]["data"]] == ["billing"]
    assert [a["name"] for a in api("GET", "/apps/", tester_token)[1]["data"]] == ["shop"]
    shop_envs = f"/environments/?app_id={made['shop']['id']}"
    assert [e["name"] for e in api("GET", shop_envs, tester_token)[1]["data"]] == ["qa"]
    assert api("GET", shop_envs, deployer_token) == (
        401, {"error": "Service account cannot access this app"})
    assert api("GET", "/apps/", made["rotated"]["bearerToken"]) == (
        401, {"error": "Token expired or deleted"})


@pytest.mark.skipif(not SECRETS_API, reason="the /v1/secrets/ API is not in this tree yet")
def test_configured_tokens_reach_exactly_their_secrets(live_server):
    api = Client(live_server)
    made = set_up(api, live_server.owner.bearer_token)
    deployer = made["deployer"]["initialToken"]["bearerToken"]
    tester = made["tester"]["initialToken"]["bearerToken"]
    billing, shop = made["billing"]["id"], made["shop"]["id"]
    refused = (401, {"error": "Service account cannot access this environment"})

    def secrets(method, token, app_id, env, **kwargs):
        return api(method, "/secrets/", token, params={"app_id": app_id, "env": env}, **kwargs)

    new = {"secrets": [{"key": "DB_URL", "value": "postgres://db"}]}
    for env in ("Development", "Staging", "Production"):
        status, created = secrets("POST", deployer, billing, env, json=new)
        assert (status, [s["key"] for s in created]) == (200, ["DB_URL"])
        status, listed = secrets("GET", deployer, billing, env)
        assert (status, [s["value"] for s in listed]) == (200, ["postgres://db"])
    for env in ("Development", "qa"):
        assert secrets("GET", deployer, shop, env) == refused
        assert secrets("POST", deployer, shop, env, json=new) == refused

    status, created = secrets("POST", tester, shop, "qa", json=new)
    assert status == 200
    assert secrets("GET", tester, shop, "QA")[0] == 200
    for app_id, env in ((shop, "Development"), (shop, "Production"), (billing, "Development")):
        assert secrets("GET", tester, app_id, env) == refused
        assert secrets("POST", tester, app_id, env, json=new) == refused

    assert secrets("GET", made["rotated"]["bearerToken"], billing, "Development") == (
        401, {"error": "Token expired or deleted"})
