"""``phase auth``'s sign-in page (``/webauth/<data>``) over HTTP (Flask test client): what a
link must hold, the sign-in round trip, nothing minted before Authorise or without CSRF, the
token minted through the audited personal-token path and encrypted in Phase's ph:v1 format to
the CLI's key, and the page's CSP. The real CLI in a real browser: test_webauth_cli.py."""

import base64

import nacl.bindings
import pytest

import support
from phase_lite import phase_crypto, webauth
from phase_lite.store import accounts as account_store
from phase_lite.store import audit as audit_store

pytestmark = pytest.mark.both_backends

JSON = {"Accept": "application/json"}
PUBLIC, PRIVATE = (key.hex() for key in nacl.bindings.crypto_kx_keypair())


def link_data(port="15123", public_key=PUBLIC, name="alice@laptop"):
    return base64.b64encode(f"{port}-{public_key}-{name}".encode()).decode()


def link(**parts):
    return "/webauth/" + link_data(**parts)


def owner_tokens(services):
    owner = account_store.get_user_by_email(services.db, support.organisation_id(services),
                                            "owner@example.com")
    return account_store.list_tokens(services.db, user_id=owner["id"])


def authorise(client, path, **headers):
    return client.post(path, data={"csrf_token": client.csrf}, headers={**JSON, **headers})


# -- reading a link --------------------------------------------------------------------------


def test_a_link_as_the_cli_makes_it_parses_with_dashes_in_the_name():
    cli = webauth.parse_request(link_data(name="ci-runner@build-host-3"))
    assert (cli.port, cli.public_key, cli.name) == (15123, PUBLIC, "ci-runner@build-host-3")
    assert cli.target == "http://localhost:15123/"


@pytest.mark.parametrize("data, message", [
    ("not base64!", webauth.NOT_A_LINK),
    (link_data()[:-3], webauth.NOT_A_LINK),  # cut, as a terminal may wrap it
    # UTF-8's base64 never holds "//" nor starts with "/": such a link was tampered with,
    # and is answered by this page (not by a router's redirect or the API's JSON 404)
    ("MTUxMjM//" + link_data()[9:], webauth.NOT_A_LINK),
    ("/" + link_data()[1:], webauth.NOT_A_LINK),
    (base64.b64encode(b"\xff\xfe-x").decode(), webauth.NOT_A_LINK),
    (base64.b64encode(b"15123").decode(), webauth.NOT_A_LINK),
    ("A" * 600, webauth.NOT_A_LINK),
    (link_data(port="80"), webauth.BAD_PORT),
    (link_data(port="65536"), webauth.BAD_PORT),
    (link_data(port="x8000"), webauth.BAD_PORT),
    (link_data(port="\u0661\u0665\u0661\u0662\u0663"), webauth.BAD_PORT),  # Arabic digits
    (link_data(public_key=PUBLIC[:-2]), webauth.BAD_KEY),
    (link_data(public_key=PUBLIC[:-1] + "g"), webauth.BAD_KEY),
    (link_data(name=""), webauth.NO_NAME),
    (link_data(name="a" * 65), webauth.NAME_TOO_LONG),
    (link_data(name="alice@\x1b[31mlaptop"), webauth.NAME_CONTROL),
    (link_data(name="alice@\nlaptop"), webauth.NAME_CONTROL),
    (link_data(name="<b>alice</b>@laptop"), webauth.NAME_MARKUP),
])
def test_a_bad_link_is_a_clear_error_page_and_mints_nothing(owner_client, services, data,
                                                           message):
    with pytest.raises(webauth.InvalidRequest) as refused:
        webauth.parse_request(data)
    assert refused.value.message == message
    before = len(owner_tokens(services))
    page = owner_client.get("/webauth/" + data)
    text = page.get_data(as_text=True)
    assert page.status_code == 400
    assert "This Phase CLI link does not work" in text and "Nothing was created." in text
    assert "Authorise</button>" not in text and "webauth.js" not in text
    assert "connect-src 'self';" in page.headers["Content-Security-Policy"]
    posted = authorise(owner_client, "/webauth/" + data)
    assert posted.status_code == 400 and posted.json == {"error": message}
    assert len(owner_tokens(services)) == before


# -- the page --------------------------------------------------------------------------------


def test_a_visitor_signs_in_and_comes_back_to_the_link(client, services):
    support.set_console_password(services, "owner@example.com", support.CONSOLE_PASSWORD)
    path = link(name="bob@desk")
    answer = client.get(path)
    assert answer.status_code == 303
    assert "/console/sign-in?next=" in answer.headers["Location"]
    signed_in = support.console_sign_in(client, query_string={"next": path})
    assert signed_in.status_code == 303 and signed_in.headers["Location"] == path
    page = client.get(path)
    assert page.status_code == 200
    assert "Authorise the Phase CLI on bob@desk" in page.get_data(as_text=True)
    assert all(token["name"] != "bob@desk" for token in owner_tokens(services))


def test_the_page_says_what_will_happen_and_mints_nothing_on_get(owner_client, services):
    before = len(owner_tokens(services))
    page = owner_client.get(link(port="17001"))
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Authorise the Phase CLI on alice@laptop" in text
    assert "A personal access token named <strong>alice@laptop</strong> will be created " \
           "for you" in text
    assert ">Authorise</button>" in text and ">Cancel</a>" in text
    assert '<script src="/static/console/webauth.js" defer></script>' in text
    csp = page.headers["Content-Security-Policy"]
    assert "connect-src 'self' http://localhost:17001;" in csp
    assert "script-src 'self';" in csp
    cancelled = owner_client.get(link(port="17001"), query_string={"cancelled": "1"})
    assert "Nothing was created." in cancelled.get_data(as_text=True)
    assert len(owner_tokens(services)) == before
    assert "connect-src 'self';" in owner_client.get(
        "/console/account/").headers["Content-Security-Policy"]  # only this page reaches out


def test_authorise_needs_the_csrf_token_and_the_script(owner_client, services):
    before = len(owner_tokens(services))
    forged = owner_client.post(link(), data={}, headers=JSON)
    assert forged.status_code == 403
    plain = owner_client.post(link(), data={"csrf_token": owner_client.csrf})
    assert plain.status_code == 400
    assert "needs JavaScript" in plain.get_data(as_text=True)
    assert len(owner_tokens(services)) == before


def test_authorise_mints_an_audited_token_encrypted_to_the_cli(owner_client, services, db):
    answer = authorise(owner_client, link(port="18222", name="carol@host-1"))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.json["target"] == "http://localhost:18222/"
    body = answer.json["body"]
    assert set(body) == {"email", "pss"}
    assert all(phase_crypto.is_ph_v1(value) for value in body.values())
    email = phase_crypto.decrypt_asymmetric(body["email"], PRIVATE, PUBLIC)
    token = phase_crypto.decrypt_asymmetric(body["pss"], PRIVATE, PUBLIC)
    assert email == "owner@example.com"
    assert support.TOKEN_PATTERN.fullmatch(token) and token.startswith("pss_user:v1:")
    [made] = [row for row in owner_tokens(services) if row["name"] == "carol@host-1"]
    assert made["expires_at"] is None  # as the account page's tokens by default
    assert made["token_hash"] == phase_crypto.hash_bearer(token.split(":")[2])
    [event] = [row for row in audit_store.list_events(db, limit=100)
               if row["resource_id"] == made["id"]]
    assert (event["action"], event["resource_type"], event["channel"]) == (
        "create", "user_token", "console")
    # the token works as the owner's, and the page's script can revoke it
    who = owner_client.get("/service/secrets/tokens/", headers={
        "Authorization": f"Bearer User {token.split(':')[2]}"})
    assert who.status_code == 200
    account = owner_client.get("/console/account/").get_data(as_text=True)
    assert "carol@host-1" in account
    revoked = owner_client.post(answer.json["revoke"], data={
        "csrf_token": owner_client.csrf, "confirmed": "yes"})
    assert revoked.status_code == 303
    assert all(row["name"] != "carol@host-1" for row in owner_tokens(services))


def test_a_second_use_of_the_link_asks_again(owner_client, services):
    path = link(name="dave@box")
    assert authorise(owner_client, path).status_code == 200
    again = owner_client.get(path)
    text = again.get_data(as_text=True)
    assert again.status_code == 200 and ">Authorise</button>" in text
    assert "You already have 1 live token named dave@box" in text
    assert len([row for row in owner_tokens(services) if row["name"] == "dave@box"]) == 1
