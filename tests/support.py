"""Helpers the tests share: accounts, apps and tokens made through the domain layer, as the
local operator (what the admin command does), so fixtures follow the same rules as the code;
seeded secrets with a full decrypted read-back (backup, restore, rotation, tampering); an app
with probe routes for the rate limit; Phase's crypto vectors; and the client side of the Phase
client protocol, done as Phase's CLI and SDKs do it; the /v1/secrets/ routes of one
environment, as a script calls them."""

import json
import re
import secrets as random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from flask import request

from phase_lite import accounts, apps, phase_crypto, service_accounts, tokens
from phase_lite import secrets as secret_domain
from phase_lite.api import json_response
from phase_lite.request_context import principal, throttle
from phase_lite.app import create_app
from phase_lite.secrets import NewSecret, Override, SecretChange
from phase_lite.store import apps as app_store
from phase_lite.accounts import Grantee
from phase_lite.audit import RequestMeta
from phase_lite.store import accounts as account_store

def without_dac_override():
    """Make root obey file modes in a child process (``preexec_fn``), as any other user does."""
    import ctypes
    import os

    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


TEST_META = RequestMeta(ip_address=None, user_agent="pytest", channel="cli")


class SecretsRoutes:
    """The /v1/secrets/ routes of one environment of an app, as a script calls them.

    ``get``, ``send`` and ``tag`` add ``headers`` to the caller's; the history routes and
    ``restore`` send ``headers`` instead of the caller's (to try other tokens or none)."""

    def __init__(self, client, app_id, headers, env="Development", prefix=""):
        self.client, self.headers, self.prefix = client, headers, prefix
        self.query = {"app_id": app_id, "env": env}

    def url(self, route="", query=None, **params):
        query = self.query if query is None else query
        return f"{self.prefix}/v1/secrets/{route}?{urlencode(dict(query, **params))}"

    def get(self, headers=None, **params):
        return self.client.get(self.url(**params), headers={**self.headers, **(headers or {})})

    def send(self, method, entries, headers=None):
        return self.client.open(self.url(), method=method, data=json.dumps({"secrets": entries}),
                                headers={**self.headers, **(headers or {})})

    def secrets(self, method, entries):
        """Write, and return the answer's JSON (the write must succeed)."""
        response = self.send(method, entries)
        assert response.status_code == 200, response.json
        return response.json

    def listed(self):
        response = self.get()
        assert response.status_code == 200
        return response.json

    def tag(self, **params):
        response = self.get(**params)
        assert response.status_code == 200
        return response.headers["ETag"]

    def history(self, secret_id, headers=None, query=None):
        return self.client.get(self.url(f"{secret_id}/history/", query),
                               headers=headers or self.headers)

    def restore(self, secret_id, version=None, raw=None, headers=None, query=None):
        data = raw if raw is not None else json.dumps({"version": version})
        return self.client.post(self.url(f"{secret_id}/restore/", query), data=data,
                                headers=headers or self.headers)

    def deleted(self, query=None, headers=None):
        return self.client.get(self.url("deleted/", query), headers=headers or self.headers)


def operator(services):
    return accounts.operator(services, "pytest")


def make_app(services, name="demo", env_names=None):
    """An app (default environments unless names are given); return (row, {name: env row})."""
    fields = {"name": name, "environments": list(env_names) if env_names else None}
    app, envs = apps.create_app(services, operator(services), fields, TEST_META)
    return app, {env["name"]: env for env in envs}


def grant(services, grantee, env_rows):
    """Give the account the environments (rows, of any apps)."""
    by_app = {}
    for env in env_rows:
        by_app.setdefault(env["app_id"], []).append(env)
    for app_id, envs in by_app.items():
        app = apps.app_in_scope(services, operator(services), app_id)
        accounts.grant_environments(services, operator(services), grantee, app, envs, TEST_META)


def make_user(services, email, role="Developer", env_rows=()):
    """A user with the role and environments and a personal token; return (row, IssuedToken)."""
    by = operator(services)
    role_row = accounts.role_by_name(services, by, role)
    user = accounts.create_user(services, by, {"email": email, "role_id": role_row["id"]},
                                TEST_META)
    grant(services, Grantee.of_user(user), env_rows)
    return user, user_token(services, user, f"{email} token")


def make_user_token(services, email, role, env_rows=()):
    """A user with the role and environments; return (user id, IssuedToken)."""
    user, issued = make_user(services, email, role, env_rows)
    return user["id"], issued


def user_token(services, user, name="token", expires_at=None):
    """Another personal token of ``user`` (a row or an email); ``expires_at`` may be past."""
    if isinstance(user, str):
        user = accounts.user_by_email(services, operator(services), user)
    issued = tokens.issue_user_token(services, operator(services), user, {"name": name},
                                     TEST_META)
    return _expire(services, issued, expires_at)


def make_service_account(services, name="ci", role="Service", env_rows=(), expires_at=None):
    """A service account with the role and environments; return (row, IssuedToken)."""
    by = operator(services)
    role_row = accounts.role_by_name(services, by, role)
    sa, issued = service_accounts.create_service_account(
        services, by, {"name": name, "role_id": role_row["id"]}, TEST_META)
    grant(services, Grantee.of_service_account(sa), env_rows)
    return sa, _expire(services, issued, expires_at)


def revoke(services, token_id):
    tokens.revoke_token(services, operator(services), token_id, TEST_META)


def _expire(services, issued, expires_at):
    """Set a token's expiry directly: the domain refuses one in the past, tests need it."""
    if expires_at is None:
        return issued
    with services.db.transaction():
        services.db.execute("UPDATE tokens SET expires_at = ? WHERE id = ?",
                            (expires_at, issued.id))
    return type(issued)(**(vars(issued) | {"expires_at": expires_at}))


def role_id(services, name):
    return accounts.role_by_name(services, operator(services), name)["id"]


def organisation(services):
    return account_store.get_organisation(services.db)


def organisation_id(services):
    return organisation(services)["id"]


# -- seeded secrets, read back in full ----------------------------------------------------------


def principal_of(services, issued):
    return services.auth.authenticate(f"Bearer {issued.bearer_token}")


def seed_app(services, principal, name, env_names=("Development", "Production")):
    """An app whose environments hold secrets at two paths, a tag, an update (two versions)
    and a personal override; return {(app, env, path, key): (value, comment, override)}."""
    app_row, envs = make_app(services, name, env_names)
    app_id = app_row["id"]
    expected = {}
    for env in envs.values():
        marker = random.token_hex(8)
        created = secret_domain.create_secrets(services, principal, env, [
            NewSecret(key="DB_URL", value=f"postgres://u:pw-{marker}@db/{name}",
                      comment=f"comment-{marker}"),
            NewSecret(key="API_KEY", value=f"key-{marker}", path="/deep/er",
                      tags=("ops",), override=Override(value=f"mine-{marker}")),
        ])
        env = app_store.find_environment(services.db, app_id, env["name"])
        secret_domain.update_secrets(services, principal, env, [
            SecretChange(id=created[0].id, value=f"postgres://u:pw2-{marker}@db/{name}")])
        expected[name, env["name"], "/", "DB_URL"] = (
            f"postgres://u:pw2-{marker}@db/{name}", f"comment-{marker}", None)
        expected[name, env["name"], "/deep/er", "API_KEY"] = (
            f"key-{marker}", "", f"mine-{marker}")
    return expected


def read_everything(services, principal):
    """Every live secret of every app, decrypted: {(app, env, path, key): (value, comment,
    override value)}."""
    found = {}
    for app in app_store.list_apps(services.db, organisation_id(services)):
        for env in app_store.list_environments(services.db, app["id"]):
            listed = secret_domain.list_secrets(services, None, env)
            overrides = secret_domain.personal_overrides(services, principal, env,
                                                         [s.id for s in listed])
            for secret in listed:
                override = overrides.get(secret.id)
                found[app["name"], env["name"], secret.path, secret.key] = (
                    secret.value, secret.comment, override.value if override else None)
    return found


def read_with_fresh_app(config, issued):
    """Read everything through a new app (no cache of the process carries over)."""
    flask_app = create_app(config)
    try:
        services = flask_app.extensions["phase_lite"]
        return read_everything(services, principal_of(services, issued))
    finally:
        flask_app.extensions["phase_lite"].close()


# -- an app with probe routes for the rate limit -----------------------------------------------


def limited_app(config, rate):
    """An app limited to ``rate`` with two throttled probe routes (closed by the caller)."""
    config.rate_limit = rate
    flask_app = create_app(config)

    @flask_app.route("/v1/probe/")
    def probe():
        throttle(request.environ, principal(request.environ))
        # a second call in one request is not a second request
        throttle(request.environ, principal(request.environ))
        return json_response({"ok": True})

    @flask_app.route("/v1/other-probe/")
    def other_probe():
        throttle(request.environ, principal(request.environ))
        return json_response({"ok": True})

    return flask_app


# -- the real Phase clients (installed under .clients/ by tests/clients/install.sh) ------------

CLIENTS = Path(__file__).resolve().parents[1] / ".clients"
PHASE = CLIENTS / "phase-cli" / "bin" / "phase"
SDK_PYTHON = CLIENTS / "phase-sdk" / "bin" / "python"
NODE_MODULES = CLIENTS / "node" / "node_modules"
NODE_SDK = NODE_MODULES / "@phase.dev" / "phase-node"

# The check every Phase client (CLI, SDKs, Terraform) applies to a token string.
TOKEN_PATTERN = re.compile(r"^pss_(user|service):v\d+(:[0-9a-f]{64}){4}$")


# -- Phase's crypto vectors ---------------------------------------------------------------------

# Phase's own vectors, copied unmodified into the repository (tests/data/README-phase-vectors.md).
VECTORS_PATH = Path(__file__).resolve().parent / "data" / "golang-sdk-crypto-test-vectors.json"
VECTORS = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def bearer_headers(issued):
    return {"Authorization": f"Bearer {issued.bearer_token}"}


# -- the client side of the Phase client protocol ----------------------------------------------

TOKENS_URL = "/service/secrets/tokens/"
SECRETS_URL = "/service/secrets/"


@dataclass
class ClientEnv:
    """An environment as a Phase client sees it after unwrapping its keys."""
    id: str
    name: str
    public_key: str
    private_key: str
    salt: str

    def encrypt(self, text):
        return phase_crypto.encrypt_asymmetric(text, self.public_key)

    def decrypt(self, ciphertext):
        return phase_crypto.decrypt_asymmetric(ciphertext, self.private_key, self.public_key)

    def digest(self, key):
        return phase_crypto.key_digest(key, self.salt)


def token_private_key(issued, payload):
    return phase_crypto.recover_token_private_key(issued.token, payload["wrapped_key_share"])


def unwrap_environments(issued, payload):
    """{env name: ClientEnv} exactly as the clients derive them from the tokens response."""
    token_public = issued.token.split(":")[3]
    token_private = token_private_key(issued, payload)
    found = {}
    for app in payload["apps"]:
        for env_key in app["environment_keys"]:
            seed = phase_crypto.decrypt_asymmetric(env_key["wrapped_seed"], token_private,
                                                   token_public)
            salt = phase_crypto.decrypt_asymmetric(env_key["wrapped_salt"], token_private,
                                                   token_public)
            public, private = phase_crypto.env_keypair(seed)
            env = env_key["environment"]
            found[env["name"]] = ClientEnv(env["id"], env["name"], public, private, salt)
    return found


def fetch_keys(client, issued, **headers):
    response = client.get(TOKENS_URL, headers={**bearer_headers(issued), **headers})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@dataclass
class Session:
    """A client session: its token, unwrapped environments and the request headers."""
    issued: object
    envs: dict

    @classmethod
    def open(cls, client, issued):
        return cls(issued, unwrap_environments(issued, fetch_keys(client, issued)))

    def headers(self, env_name="Development", **extra):
        return {**bearer_headers(self.issued), "Environment": self.envs[env_name].id, **extra}

    def entry(self, key, value, env_name="Development", **fields):
        env = self.envs[env_name]
        return {"key": env.encrypt(key), "keyDigest": env.digest(key.upper()),
                "value": env.encrypt(value), "path": "/", "tags": [], "comment": "", **fields}


def send(client, method, session, body, env_name="Development", content_type="application/json",
         **headers):
    """A client-protocol write (or any method) with the session's headers."""
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.open(SECRETS_URL, method=method, data=data, content_type=content_type,
                       headers=session.headers(env_name, **headers))


def wire_rows(client, session, env_name="Development", **headers):
    """The rows of a client GET, which must succeed."""
    response = client.get(SECRETS_URL, headers=session.headers(env_name, **headers))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def opened(session, rows, env_name="Development"):
    """{key: (value, comment, path)} of wire rows, decrypted as a client does."""
    env = session.envs[env_name]
    return {env.decrypt(row["key"]): (env.decrypt(row["value"]),
                                      env.decrypt(row["comment"]) if row["comment"] else "",
                                      row["path"])
            for row in rows}


def prefix_middleware(flask_app):
    """The layer that answers GETs before Flask (under the access log and metrics wrappers)."""
    layer = flask_app.wsgi_app
    while not hasattr(layer, "direct_gets"):
        layer = layer.wsgi_app
    return layer


def without_fast_path(flask_app):
    """Send every request through Flask's view (the fast path's answers, for comparison)."""
    prefix_middleware(flask_app).direct_gets.clear()


CONSOLE_PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page) -> str:
    """The CSRF token of a console page (a test client's response)."""
    return CSRF.search(page.get_data(as_text=True)).group(1)


def console_sign_in(client, email="owner@example.com", password=CONSOLE_PASSWORD, **kwargs):
    """Sign a Flask test client in to the console; return the sign-in answer."""
    token = csrf_of(client.get("/console/sign-in", **kwargs))
    return client.post("/console/sign-in", data={"email": email, "password": password,
                                                 "csrf_token": token}, **kwargs)


CONFIRMED = {"confirmed": "yes"}


def console_env_url(app_row, env):
    """The console page of an environment."""
    return f"/console/apps/{app_row['id']}/environments/{env['id']}/"


def set_console_password(services, email, password, role=None):
    """Give a user (made with ``role`` when given) a console password; return the user row."""
    from phase_lite.console import sessions

    if role is not None:
        make_user(services, email, role)
    by = operator(services)
    user = accounts.user_by_email(services, by, email)
    sessions.set_password(services.db, user["id"], password, actor=by, meta=TEST_META)
    return user


# -- the console in a browser (Playwright; imported when used) ---------------------------------

BROWSER_PASSWORD = "a long browser password"
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".screenshots"
BLOCKING = ("serious", "critical")


def browser_sign_in(page, email="owner@example.com", password=BROWSER_PASSWORD):
    from playwright.sync_api import expect

    page.goto("/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1, name="Apps")).to_be_visible()


def check_console_page(page, name):
    """axe-core in both themes (no serious or critical violation), and a screenshot of each
    under ``.screenshots/``."""
    from axe_playwright_python.sync_playwright import Axe

    SCREENSHOTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        found = Axe().run(page).response["violations"]
        blocking = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                    for v in found if v["impact"] in BLOCKING]
        assert not blocking, f"{name} ({scheme}): {blocking}"
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{scheme}.png"), full_page=True)
    page.emulate_media(color_scheme="light")


def browser_make_app(page, name):
    from playwright.sync_api import expect

    page.get_by_role("link", name="Apps", exact=True).click()
    page.get_by_role("button", name="New app").click()
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create app").click()
    expect(page.get_by_role("heading", level=1, name=name)).to_be_visible()


def browser_new_secret(page, key, value, **fields):
    from playwright.sync_api import expect

    page.get_by_role("button", name="New secret").click()
    page.get_by_label("Key").fill(key)
    page.get_by_label("Value").fill(value)
    for label, text in fields.items():
        page.get_by_label(label).fill(text)
    page.get_by_role("button", name="Save").click()
    expect(browser_row_of(page, key.upper())).to_be_visible()


def browser_confirm(page, question, answer):
    """Answer ``answer`` in the console's confirmation dialog asking ``question``."""
    from playwright.sync_api import expect

    asked = page.get_by_role("dialog", name=question)
    expect(asked).to_be_visible()
    asked.get_by_role("button", name=answer, exact=True).click()


def browser_row_of(page, key):
    """The table row whose row header is ``key``."""
    return page.get_by_role("row").filter(
        has=page.get_by_role("rowheader", name=key, exact=True))


# -- Lockbox, as the browser does it ---------------------------------------------------------

LOCKBOX_AAD = b"phase_lite/lockbox/v1"
LOCKBOX_VALUE = "hunter2 \u00e9\u00e8 the shared value"


def lockbox_seal(value=LOCKBOX_VALUE, key=None):
    """(ciphertext as sent, key): what the browser makes (XChaCha20-Poly1305, random key)."""
    import os

    import nacl.bindings

    from phase_lite import lockbox

    key = key or os.urandom(32)
    nonce = os.urandom(24)
    sealed = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(
        value.encode(), LOCKBOX_AAD, nonce, key)
    return lockbox.encode_ciphertext(nonce + sealed), key


def lockbox_unseal(ciphertext, key):
    import nacl.bindings

    from phase_lite import lockbox

    raw = lockbox.decode_ciphertext(ciphertext)
    return nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(
        raw[24:], LOCKBOX_AAD, raw[:24], key).decode()


def lockbox_create(client, headers, prefix="", **fields):
    """POST /v1/lockbox/ with a freshly sealed value."""
    body = {"ciphertext": lockbox_seal()[0], **fields}
    return client.post(f"{prefix}/v1/lockbox/", headers=headers, json=body)


def lockbox_link_id(answer):
    return answer.json["link"].rsplit("/", 1)[1]


def run_json(run, *args):
    """The JSON a ``phase-lite`` command prints with ``--json``."""
    return json.loads(run(*args, "--json").output)
