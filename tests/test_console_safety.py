"""The console loses nothing and daily tasks behave, over HTTP (Flask test client): stale
single-secret writes refused, keys every console form can handle, bulk edit's preview,
multi-line values, folders carried, the sign-in lockout counting failures only, navigation
for the caller's role, the service-account header that works."""

import html
import json
import re

import pytest

import support
from phase_lite import audit
from phase_lite.store import apps as app_store
from phase_lite.store import audit as audit_store

CONFIRMED = support.CONFIRMED
env_url = support.console_env_url
sign_in = support.console_sign_in


def put(services, env, key, value, path="/", **fields):
    """Write a secret as another client would (the domain function the API calls)."""
    from phase_lite import secrets

    return secrets.create_secrets(services, support.operator(services), env, [
        secrets.NewSecret(key=key, value=value, path=path, **fields)], support.TEST_META)[0]


def read_secret_ids(services):
    services.read_log.flush()
    return [audit.secret_ids(json.loads(event["details"] or "null")) for event in
            audit_store.list_events(services.db, limit=1000) if event["action"] == "secrets.read"]


def version_of(db, env):
    return str(app_store.environment_versions(db, [env["id"]])[env["id"]])


def body(answer):
    return answer.get_data(as_text=True)


def exported(client, app_row, env):
    return client.get(env_url(app_row, env) + "export.json").get_json()


def secret_ids(client, url):
    return re.findall(r'<tr id="secret-([^"]+)">', body(client.get(url)))


# -- the sign-in lockout ---------------------------------------------------------------------


def test_successful_sign_ins_do_not_lock_anyone_out(app, services):
    support.set_console_password(services, "owner@example.com", support.CONSOLE_PASSWORD)
    for _ in range(15):  # more than the ten attempts an email has in 15 minutes
        assert sign_in(app.test_client()).status_code == 303
    client = app.test_client()
    for _ in range(9):
        assert sign_in(client, password="wrong password!").status_code == 401
    assert sign_in(client).status_code == 303  # the tenth attempt is still allowed
    client = app.test_client()
    assert sign_in(client, password="wrong password!").status_code == 401
    assert sign_in(client).status_code == 429  # ten failures lock the email


def test_the_throttle_forgives_only_what_it_counted():
    from phase_lite.console.sessions import SignInThrottle

    clock = [0.0]
    throttle = SignInThrottle(per_address=3, per_email=2, clock=lambda: clock[0])
    for _ in range(5):
        assert throttle.attempt("10.0.0.1", "a@example.com") == 0
        throttle.forgive("10.0.0.1", "a@example.com")
    assert throttle.attempt("10.0.0.1", "a@example.com") == 0
    assert throttle.attempt("10.0.0.1", "a@example.com") == 0
    assert throttle.attempt("10.0.0.1", "a@example.com") > 0
    throttle.forgive("10.0.0.2", "b@example.com")  # nothing counted: nothing to take back
    assert throttle.attempt("10.0.0.1", "a@example.com") > 0


# -- what the caller may use -----------------------------------------------------------------


def nav_links(page):
    nav = body(page).split('<nav aria-label="Main">')[1].split("</nav>")[0]
    return re.findall(r">([^<>]+)</a>", nav)


def test_the_navigation_shows_only_what_the_role_may_open(app, services, owner_client):
    support.set_console_password(services, "dev@example.com", support.CONSOLE_PASSWORD,
                                 role="Developer")
    dev = app.test_client()
    assert sign_in(dev, email="dev@example.com").status_code == 303
    shown = nav_links(dev.get("/console/apps/"))
    assert "Service accounts" not in shown
    assert {"Apps", "Members", "Audit log", "Account"} <= set(shown)
    for link in shown:  # every link the Developer is shown opens
        path = {"Apps": "/console/apps/", "Members": "/console/members/",
                "Audit log": "/console/audit/", "Lockbox": "/console/lockbox/",
                "Account": "/console/account/"}[link]
        assert dev.get(path).status_code == 200, link
    assert dev.get("/console/service-accounts/").status_code == 403
    assert "Service accounts" in nav_links(owner_client.get("/console/apps/"))


# -- the service account's REST header -------------------------------------------------------


def test_the_header_shown_with_a_new_token_authenticates(demo, owner_client, client, services):
    app_row, envs = demo
    url = env_url(app_row, envs["Production"])
    owner_client.post(url + "secrets/new", data={"key": "K", "value": "v",
                                                 "csrf_token": owner_client.csrf})
    from phase_lite import accounts
    role = accounts.role_by_name(services, support.operator(services), "Service")
    owner_client.post("/console/service-accounts/new", data={
        "name": "deployer", "role_id": role["id"], "csrf_token": owner_client.csrf})
    listing = body(owner_client.get("/console/service-accounts/"))
    sa_url = re.search(r'href="(/console/service-accounts/[^"]+/)">deployer</a>', listing).group(1)
    owner_client.post(sa_url + "access", data={"environment": envs["Production"]["id"],
                                               "csrf_token": owner_client.csrf})
    minted = body(owner_client.post(sa_url + "tokens/new", data={
        "name": "ci", "csrf_token": owner_client.csrf}))
    shown = html.unescape(re.search(r'<code id="bearer-header"[^>]*>([^<]+)</code>',
                                    minted).group(1))
    name, _, value = shown.partition(": ")
    assert name == "Authorization" and value.startswith("Bearer ServiceAccount ")
    answer = client.get(f"/v1/secrets/?app_id={app_row['id']}&env=Production",
                        headers={name: value})
    assert answer.status_code == 200 and answer.get_json()[0]["value"] == "v"


# -- folders ---------------------------------------------------------------------------------


def test_reveal_all_in_a_folder_reveals_and_records_that_folder_only(demo, owner_client,
                                                                     services):
    app_row, envs = demo
    env = envs["Staging"]
    top = put(services, env, "TOP", "top-value")
    inner = put(services, env, "INNER", "inner-value", path="/backend")
    put(services, env, "DEEPER", "deeper-value", path="/backend/db")
    before = len(read_secret_ids(services))
    url = env_url(app_row, env)
    page = body(owner_client.get(url + "?path=/backend"))
    form = page.split('class="inline reveal-all"')[1].split("</form>")[0]
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form))
    assert fields["path"] == "/backend"
    shown = body(owner_client.post(url + "reveal", data=fields))
    assert "inner-value" in shown and "top-value" not in shown and "deeper-value" not in shown
    assert '<span aria-current="page">backend</span>' in shown  # still in the folder
    after = read_secret_ids(services)
    assert len(after) == before + 1 and [inner.id] in after
    assert not [ids for ids in after if top.id in ids]  # the root's secret stayed unread


def test_bulk_edit_and_import_opened_in_a_folder_stay_in_it(demo, owner_client, services):
    app_row, envs = demo
    env = envs["Staging"]
    put(services, env, "TOP", "top-value")
    put(services, env, "INNER", "inner-value", path="/backend")
    url = env_url(app_row, env)
    page = body(owner_client.get(url + "?path=/backend"))
    for action in ("bulk-edit", "import"):
        form = page.split(f'action="{url}{action}"')[1].split("</form>")[0]
        assert 'name="path" value="/backend"' in form, action
    editor = body(owner_client.get(url + "bulk-edit?path=/backend"))
    assert "INNER=" in editor and "TOP=" not in editor
    assert f'href="{url}?path=/backend">Cancel</a>' in editor


# -- stale pages -----------------------------------------------------------------------------


def form_fields(page, marker='<form method="post" class="stack">'):
    """The named fields of the first form after ``marker`` (inputs, textareas, selects)."""
    form = page.split(marker, 1)[1].split("</form>")[0]
    fields = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name, value = re.search(r' name="([^"]+)"', tag), re.search(r' value="([^"]*)"', tag)
        if name and 'type="checkbox"' not in tag:
            fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
    fields.update((name, html.unescape(text)) for name, text in
                  re.findall(r'<textarea[^>]* name="([^"]+)"[^>]*>(.*?)</textarea>', form, re.S))
    return fields


def another_client_writes(services, env, secret, value):
    from phase_lite import secrets

    secrets.update_secrets(services, support.operator(services), env, [
        secrets.SecretChange(id=secret.id, value=value)], support.TEST_META)


STALE = "changed since you opened this page; nothing was saved"


def test_a_stale_edit_is_refused_and_keeps_what_was_typed(demo, owner_client, services, db):
    app_row, envs = demo
    env = envs["Staging"]
    secret = put(services, env, "API", "first")
    url = env_url(app_row, env) + f"secrets/{secret.id}/edit"
    fields = form_fields(body(owner_client.get(url)))
    assert fields["env_version"] == version_of(db, env) and fields["value"] == "first"
    another_client_writes(services, env, secret, "from the API")
    before = version_of(db, env)
    refused = owner_client.post(url, data=fields | {"value": "mine, typed by hand"})
    assert refused.status_code == 412 and STALE in body(refused)
    assert "mine, typed by hand</textarea>" in body(refused)  # nothing typed is lost
    assert exported(owner_client, app_row, env) == {"API": "from the API"}
    assert version_of(db, env) == before
    fresh = form_fields(body(owner_client.get(url)))  # opened again, it saves
    assert owner_client.post(url, data=fresh | {"value": "mine"}).status_code == 303
    assert exported(owner_client, app_row, env) == {"API": "mine"}
    assert owner_client.post(url, data=fresh | {"env_version": ""}).status_code == 412


def test_stale_delete_restore_and_add_value_are_refused(demo, owner_client, services, db):
    app_row, envs = demo
    env = envs["Staging"]
    secret = put(services, env, "API", "first")
    url = env_url(app_row, env)
    listing = body(owner_client.get(url))  # before every change below
    delete_url = html.unescape(re.search(r'action="([^"]*/secrets/[^"]+/delete[^"]*)"',
                                         listing).group(1))
    another_client_writes(services, env, secret, "second")
    history = body(owner_client.get(url + f"secrets/{secret.id}/history"))
    another_client_writes(services, env, secret, "third")
    # delete, with the script's confirmation and without it
    refused = owner_client.post(delete_url, data=CONFIRMED | {"csrf_token": owner_client.csrf})
    assert refused.status_code == 412 and STALE in body(refused)
    asked = body(owner_client.post(delete_url, data={"csrf_token": owner_client.csrf}))
    refused = owner_client.post(delete_url, data=form_fields(asked, 'class="confirm"'))
    assert refused.status_code == 412
    # restore a version from a history page opened before the changes
    fields = form_fields(history, '/restore" class="inline">')  # opened before the changes
    refused = owner_client.post(url + f"secrets/{secret.id}/restore", data=fields)
    assert refused.status_code == 412 and STALE in body(refused)
    assert exported(owner_client, app_row, env) == {"API": "third"}
    # restore a deleted secret from a stale list
    owner_client.post(delete_url.split("?")[0], data=CONFIRMED | {
        "env_version": version_of(db, env), "csrf_token": owner_client.csrf})
    deleted = body(owner_client.get(url + "deleted"))
    put(services, env, "OTHER", "x")
    fields = form_fields(deleted, '/restore" class="inline">')
    refused = owner_client.post(url + f"deleted/{secret.id}/restore", data=fields)
    assert refused.status_code == 412 and STALE in body(refused)
    assert exported(owner_client, app_row, env) == {"OTHER": "x"}
    # "Add value" from an overview opened before someone added the key there
    overview = body(owner_client.get(f"/console/apps/{app_row['id']}/"))
    add = html.unescape(re.search(r'href="(environments/' + envs["Production"]["id"]
                                  + r'/secrets/new\?[^"]+)"', overview).group(1))
    form = body(owner_client.get(f"/console/apps/{app_row['id']}/" + add))
    put(services, envs["Production"], "ELSEWHERE", "x")
    refused = owner_client.post(f"/console/apps/{app_row['id']}/" + add.split("?")[0],
                                data=form_fields(form) | {"value": "mine"})
    assert refused.status_code == 412 and STALE in body(refused)
    assert exported(owner_client, app_row, envs["Production"]) == {"ELSEWHERE": "x"}


# -- keys every part of the console can handle -----------------------------------------------


BAD_KEYS = ["my key", "my-key!", "1ST", "K" * 257, "A=B", "ключ"]
KEY_MESSAGE = "A key is a name an environment variable can have"


@pytest.mark.parametrize("key", BAD_KEYS)
def test_every_console_form_refuses_a_key_no_variable_can_have(key, demo, owner_client,
                                                               services, db):
    app_row, envs = demo
    env = envs["Staging"]
    url = env_url(app_row, env)
    csrf = {"csrf_token": owner_client.csrf}
    existing = put(services, env, "FINE", "v")
    answers = {
        "new": owner_client.post(url + "secrets/new", data=csrf | {"key": key, "value": "x"}),
        "rename": owner_client.post(url + f"secrets/{existing.id}/edit", data=csrf | {
            "key": key, "value": "v", "env_version": version_of(db, env)}),
    }
    if "=" not in key:  # (in a .env line, A=B="x" is the key A)
        answers["import"] = owner_client.post(url + "import", data=csrf | {
            "text": f'{key}="x"\n', "version": version_of(db, env)})
        answers["bulk edit"] = owner_client.post(url + "bulk-edit", data=csrf | {
            "text": f'FINE="v"\n{key}="x"\n', "version": version_of(db, env)})
    for form, answer in answers.items():
        assert answer.status_code == 400, form
        text = html.unescape(body(answer))
        assert KEY_MESSAGE in text, form
    assert exported(owner_client, app_row, env) == {"FINE": "v"}


def test_keys_are_upper_cased_and_the_apis_keys_stay_editable(demo, owner_client, services,
                                                               db, client, owner_headers):
    app_row, envs = demo
    env = envs["Staging"]
    url = env_url(app_row, env)
    csrf = {"csrf_token": owner_client.csrf}
    assert owner_client.post(url + "secrets/new", data=csrf | {
        "key": " database_url ", "value": "x"}).status_code == 303
    # the REST API keeps Phase's contract: it takes a key the console would not make
    made = client.post(f"/v1/secrets/?app_id={app_row['id']}&env=Staging",
                       json={"secrets": [{"key": "legacy-key", "value": "old"}]},
                       headers=owner_headers)
    assert made.status_code == 200
    legacy = next(secret_id for secret_id in secret_ids(owner_client, url)
                  if "LEGACY-KEY" in body(owner_client.get(url + f"secrets/{secret_id}/edit")))
    kept = owner_client.post(url + f"secrets/{legacy}/edit", data=csrf | {
        "key": "LEGACY-KEY", "value": "new", "env_version": version_of(db, env)})
    assert kept.status_code == 303  # its value changes, its key stays
    editor = html.unescape(body(owner_client.get(url + "bulk-edit")))
    text = re.search(r'<textarea id="text"[^>]*>(.*?)</textarea>', editor, re.S).group(1)
    assert 'LEGACY-KEY="new"' in text
    preview = owner_client.post(url + "bulk-edit", data=csrf | {
        "text": text, "version": version_of(db, env)})
    assert preview.status_code == 200 and "No change" in body(preview)
    assert exported(owner_client, app_row, env) == {"DATABASE_URL": "x", "LEGACY-KEY": "new"}


def test_a_key_given_twice_is_refused_not_last_wins(demo, owner_client, db):
    app_row, envs = demo
    env = envs["Staging"]
    url = env_url(app_row, env)
    text = 'ONE="1"\nTWO="2"\none="again"\n'
    for form in ("bulk-edit", "import"):
        answer = owner_client.post(url + form, data={
            "text": text, "version": version_of(db, env), "step": "apply",
            "csrf_token": owner_client.csrf})
        assert answer.status_code == 400, form
        assert "Line 3 repeats the key of line 1" in body(answer), form
    assert exported(owner_client, app_row, env) == {}


# -- multi-line values -----------------------------------------------------------------------


PEM = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
       "bXkgImtleSIgd2l0aCBcIGFuZCAnCg==\n-----END PRIVATE KEY-----\n")
ODD_VALUES = [PEM, 'say "hi"\\n not a break', "tab\there", "a\r\nb", "'single'", "# not a comment",
              "ends with a backslash \\", "", "x=y", "line\n\n\nwith blank lines"]


def test_dotenv_reads_back_what_it_writes():
    from phase_lite.console import dotenv

    pairs = [(f"K{number}", value) for number, value in enumerate(ODD_VALUES)]
    text = dotenv.render(pairs)
    assert dotenv.parse(text) == pairs
    assert dotenv.parse(text.replace("\n", "\r\n")) == [
        (key, value.replace("\r\n", "\n") if "\r" not in value else value)
        for key, value in pairs]
    assert "-----BEGIN PRIVATE KEY-----\nMIIE" in text  # line breaks as they are
    assert dotenv.parse("export A='one\ntwo'\nB=3 # note\n") == [("A", "one\ntwo"), ("B", "3")]


def test_a_pem_key_keeps_its_lines_in_bulk_edit_and_export(demo, owner_client, services, db):
    app_row, envs = demo
    env = envs["Staging"]
    url = env_url(app_row, env)
    put(services, env, "TLS_KEY", PEM)
    put(services, env, "QUOTED", 'say "hi"\\n')
    editor = html.unescape(body(owner_client.get(url + "bulk-edit")))
    text = re.search(r'<textarea id="text"[^>]*>\n?(.*?)</textarea>', editor, re.S).group(1)
    assert "-----BEGIN PRIVATE KEY-----\nMIIE" in text
    preview = owner_client.post(url + "bulk-edit", data={
        "text": text.replace("\n", "\r\n"), "version": version_of(db, env),
        "csrf_token": owner_client.csrf})  # as a browser sends a textarea
    assert "No change" in body(preview)
    env_file = body(owner_client.get(url + "export.env"))
    from phase_lite.console import dotenv

    assert dict(dotenv.parse(env_file)) == exported(owner_client, app_row, env) == {
        "TLS_KEY": PEM, "QUOTED": 'say "hi"\\n'}
    revealed = body(owner_client.post(url + "reveal", data={
        "all": "1", "csrf_token": owner_client.csrf}))
    assert html.escape(PEM, quote=False) in revealed  # the page keeps its line breaks


# -- daily tasks -----------------------------------------------------------------------------


def test_add_value_keeps_the_keys_type_comment_and_tags(demo, owner_client, services):
    app_row, envs = demo
    put(services, envs["Development"], "FEATURE", "on", comment="the new checkout",
        tags=("web",), type="config")
    overview = body(owner_client.get(f"/console/apps/{app_row['id']}/"))
    add = html.unescape(re.search(r'href="(environments/' + envs["Staging"]["id"]
                                  + r'/secrets/new\?[^"]+)"', overview).group(1))
    form = body(owner_client.get(f"/console/apps/{app_row['id']}/" + add))
    fields = form_fields(form)
    assert fields["comment"] == "the new checkout" and fields["tags"] == "web"
    assert '<option value="config" selected>' in form
    saved = owner_client.post(f"/console/apps/{app_row['id']}/" + add.split("?")[0],
                              data=fields | {"value": "off", "type": "config"})
    assert saved.status_code == 303
    from phase_lite import secrets

    (added,) = secrets.list_secrets(services, None, envs["Staging"])
    assert (added.key, added.value, added.comment, added.tags, added.type) == (
        "FEATURE", "off", "the new checkout", ("web",), "config")


def test_one_form_adds_a_key_to_several_environments(demo, owner_client, services):
    app_row, envs = demo
    base = f"/console/apps/{app_row['id']}/"
    empty = body(owner_client.get(base))
    assert "Add a secret to every environment" in empty
    form = body(owner_client.get(base + "secrets/new"))
    assert form.count('name="environment"') == 3 and form.count(" checked>") == 3
    fields = {"csrf_token": owner_client.csrf, "key": "api url", "comment": "the API",
              "tags": "web, edge", "type": "config", "path": "/svc",
              "environment": [envs[name]["id"] for name in envs]}
    fields.update({f"value-{env['id']}": f"https://{name.lower()}.example\r\nsecond line"
                   for name, env in envs.items()})
    refused = owner_client.post(base + "secrets/new", data=fields)
    assert refused.status_code == 400 and "environment variable" in html.unescape(body(refused))
    fields["key"] = "api_url"
    saved = owner_client.post(base + "secrets/new", data=fields)
    assert saved.status_code == 303
    assert "Secret created in 3 environment(s)." in body(owner_client.get(saved.location))
    from phase_lite import secrets

    for name, env in envs.items():
        (made,) = secrets.list_secrets(services, None, env)
        assert (made.key, made.value, made.comment, made.tags, made.type, made.path) == (
            "API_URL", f"https://{name.lower()}.example\nsecond line", "the API",
            ("web", "edge"), "config", "/svc")
    # all or none: a duplicate in one environment leaves the others untouched
    fields["environment"] = [envs["Staging"]["id"]]
    fields["key"], fields["path"] = "ONLY_HERE", "/"
    assert owner_client.post(base + "secrets/new", data=fields).status_code == 303
    fields["environment"] = [env["id"] for env in envs.values()]
    again = owner_client.post(base + "secrets/new", data=fields)
    assert again.status_code == 409
    assert [s.key for s in secrets.list_secrets(services, None, envs["Production"])] == ["API_URL"]
    none = owner_client.post(base + "secrets/new", data=fields | {"environment": [],
                                                                  "key": "NEW"})
    assert none.status_code == 400 and "Choose at least one environment." in body(none)


def test_config_values_are_shown_without_asking_and_recorded_as_read(demo, owner_client,
                                                                      services):
    app_row, envs = demo
    env = envs["Staging"]
    shown = put(services, env, "LOG_LEVEL", "debug-level", type="config")
    put(services, env, "PASSWORD", "hidden-password")
    before = len(read_secret_ids(services))
    listing = body(owner_client.get(env_url(app_row, env)))
    assert "debug-level" in listing and "hidden-password" not in listing
    overview = body(owner_client.get(f"/console/apps/{app_row['id']}/"))
    assert "debug-level" in overview and "hidden-password" not in overview
    reads = read_secret_ids(services)
    assert len(reads) == before + 2 and reads.count([shown.id]) == 2
    put(services, envs["Production"], "PLAIN", "x")
    owner_client.get(env_url(app_row, envs["Production"]))  # no config: nothing read
    assert len(read_secret_ids(services)) == before + 2


def test_edit_in_place_writes_only_value_comment_and_tags_at_the_opened_version(
        demo, owner_client, services, db):
    app_row, envs = demo
    env = envs["Development"]
    url = env_url(app_row, env)
    json_accept = {"Accept": "application/json"}
    csrf = {"csrf_token": owner_client.csrf}
    plain = put(services, env, "PLAIN", "one", comment="c", tags=("t",), path="/p")
    sealed = put(services, env, "LOCKED", "never shown", type="sealed")
    owner_client.post(url + f"secrets/{plain.id}/edit", data=csrf | {  # an override of mine
        "key": "PLAIN", "value": "one", "comment": "c", "tags": "t", "path": "/p",
        "override_value": "mine", "override_active": "1",
        "env_version": version_of(db, env)})
    opened = owner_client.post(url + f"secrets/{plain.id}/in-place", data=csrf | {
        "step": "open"}, headers=json_accept).get_json()
    assert opened == {"value": "one", "comment": "c", "tags": ["t"], "sealed": False,
                      "env_version": int(version_of(db, env))}
    saved = owner_client.post(url + f"secrets/{plain.id}/in-place", data=csrf | {
        "step": "save", "value": "two\r\nlines", "comment": "new", "tags": "a, b",
        "env_version": str(opened["env_version"])}, headers=json_accept)
    assert saved.status_code == 200
    assert saved.get_json() == {"comment": "new", "tags": ["a", "b"], "value": "two\nlines",
                                "unresolved": False, "override": "mine",
                                "env_version": int(version_of(db, env))}
    from phase_lite import secrets

    (now,) = [s for s in secrets.list_secrets(services, None, env) if s.id == plain.id]
    assert (now.key, now.path, now.type, now.value) == ("PLAIN", "/p", "secret", "two\nlines")
    stale = owner_client.post(url + f"secrets/{plain.id}/in-place", data=csrf | {
        "step": "save", "value": "lost", "env_version": str(opened["env_version"])},
        headers=json_accept)
    assert stale.status_code == 412 and STALE in stale.get_json()["error"]
    locked = owner_client.post(url + f"secrets/{sealed.id}/in-place", data=csrf | {
        "step": "open"}, headers=json_accept).get_json()
    assert locked["value"] is None and locked["sealed"]
    owner_client.post(url + f"secrets/{sealed.id}/in-place", data=csrf | {
        "step": "save", "value": "ignored", "comment": "noted",
        "env_version": version_of(db, env)}, headers=json_accept)
    (kept,) = [s for s in secrets.list_secrets(services, None, env) if s.id == sealed.id]
    assert (kept.value, kept.comment) == ("never shown", "noted")
    # without script: the full form, or the folder again
    asked = owner_client.post(url + f"secrets/{plain.id}/in-place", data=csrf)
    assert asked.status_code == 303 and asked.location.endswith(f"{plain.id}/edit")
    done = owner_client.post(url + f"secrets/{plain.id}/in-place", data=csrf | {
        "step": "save", "value": "three", "env_version": version_of(db, env)})
    assert done.status_code == 303 and "path=/p" in done.location


def test_a_reference_that_does_not_resolve_is_asked_about_before_saving(
        demo, owner_client, services, db):
    app_row, envs = demo
    env = envs["Staging"]
    url = env_url(app_row, env)
    csrf = {"csrf_token": owner_client.csrf}
    put(services, env, "HOST", "db.internal")
    put(services, envs["Production"], "PASSWORD", "p")
    value = "postgres://${HOST}:${Production.PASSWORD}@${PORT}/${Nowhere.X}${{literal}}"
    asked = owner_client.post(url + "secrets/new", data=csrf | {"key": "DSN", "value": value})
    text = html.unescape(body(asked))
    assert asked.status_code == 200 and "Not saved yet" in text
    assert "${PORT}" in text and "${Nowhere.X}" in text
    assert "<code>${HOST}</code>" not in text and "${Production.PASSWORD}</code>" not in text
    assert f">{html.escape(value, quote=False)}</textarea>" in body(asked)  # kept
    assert exported(owner_client, app_row, env) == {"HOST": "db.internal"}
    saved = owner_client.post(url + "secrets/new", data=csrf | {
        "key": "DSN", "value": value, "confirm_references": "yes"})
    assert saved.status_code == 303
    from phase_lite import secrets

    def stored():
        return next(s for s in secrets.list_secrets(services, None, env) if s.key == "DSN")

    dsn = stored()
    assert dsn.value == value
    # the same on an edit that changes the value, and in place; not on an unchanged one
    unchanged = owner_client.post(url + f"secrets/{dsn.id}/edit", data=csrf | {
        "key": "DSN", "value": value, "comment": "noted", "env_version": version_of(db, env)})
    assert unchanged.status_code == 303
    changed = owner_client.post(url + f"secrets/{dsn.id}/edit", data=csrf | {
        "key": "DSN", "value": "${MISSING}", "env_version": version_of(db, env)})
    assert "Not saved yet" in body(changed)
    in_place = owner_client.post(url + f"secrets/{dsn.id}/in-place", data=csrf | {
        "step": "save", "value": "${MISSING}", "env_version": version_of(db, env)},
        headers={"Accept": "application/json"})
    assert in_place.status_code == 409 and in_place.get_json()["unresolved"] == ["${MISSING}"]
    assert stored().value == value and stored().comment == "noted"


def test_search_over_keys_and_revealed_values(demo, owner_client, services):
    app_row, envs = demo
    put(services, envs["Development"], "DB_HOST", "db.dev.internal")
    put(services, envs["Production"], "DB_HOST", "db.prod.internal")
    put(services, envs["Production"], "API_URL", "https://api.example")
    put(services, envs["Production"], "CACHE", "redis.Internal")
    put(services, envs["Staging"], "LOCKED", "internal-sealed", type="sealed")
    before = len(read_secret_ids(services))
    base = f"/console/apps/{app_row['id']}/"
    found = body(owner_client.post(base + "search", data={
        "q": "INTERNAL", "csrf_token": owner_client.csrf}))
    keys = re.findall(r'<tr data-key="([^"]+)">', found)
    assert keys == ["CACHE", "DB_HOST"]  # by value, any case; never a sealed one
    assert "db.prod.internal" in found and "redis.Internal" in found
    assert "https://api.example" not in found
    assert "2 keys whose key or value holds" in found
    assert len(read_secret_ids(services)) == before + 2  # Development's and Production's
    by_key = body(owner_client.post(base + "search", data={
        "q": "api_", "csrf_token": owner_client.csrf}))
    assert re.findall(r'<tr data-key="([^"]+)">', by_key) == ["API_URL"]
    assert owner_client.post(base + "search", data={
        "q": " ", "csrf_token": owner_client.csrf}).status_code == 303


def test_the_audit_log_names_a_member_events_target_and_the_user_agent(app, services,
                                                                       owner_client):
    invited = owner_client.post("/console/members/invite", data={
        "email": "new.member@example.com", "csrf_token": owner_client.csrf,
        "role_id": next(role["id"] for role in __import__("phase_lite").accounts.list_roles(
            services, support.operator(services)) if role["name"] == "Developer")},
        headers={"User-Agent": "Firefox/150 on the test bench"})
    assert invited.status_code == 200
    page = body(owner_client.get("/console/audit/?event=invite"))
    row = page.split("<tbody>")[1].split("</tr>")[0]
    assert "new.member@example.com" in row
    assert "Firefox/150 on the test bench" in row


def test_an_invitation_chooses_environments_and_its_link_can_be_made_again(
        app, demo, services, owner_client):
    app_row, envs = demo
    from phase_lite import accounts

    developer = next(role["id"] for role in accounts.list_roles(
        services, support.operator(services)) if role["name"] == "Developer")
    invited = body(owner_client.post("/console/members/invite", data={
        "email": "late@example.com", "role_id": developer, "csrf_token": owner_client.csrf,
        "environment": [envs["Staging"]["id"]]}))
    first = html.unescape(re.search(r'(http://[^<"]+/console/welcome\?token=[^<"]+)',
                                    invited).group(1))
    page = body(owner_client.get("/console/members/"))
    row = next(part for part in page.split("<tr>") if "late@example.com" in part)
    assert "1 environment<" in row and "New invitation link" in row
    user = accounts.user_by_email(services, support.operator(services), "late@example.com")
    again = body(owner_client.post(f"/console/members/{user['id']}/invite-link",
                                   data={"csrf_token": owner_client.csrf}))
    second = html.unescape(re.search(r'(http://[^<"]+/console/welcome\?token=[^<"]+)',
                                     again).group(1))
    assert second != first
    visitor = app.test_client()
    assert visitor.get(first.split("localhost", 1)[-1]).status_code == 404  # the old one ended
    form = visitor.get(second.split("localhost", 1)[-1])
    assert form.status_code == 200
    used = visitor.post("/console/welcome", data={
        "token": second.split("token=")[1], "password": "a fine new password",
        "confirmation": "a fine new password", "csrf_token": support.csrf_of(form)})
    assert used.status_code == 303
    refused = owner_client.post(f"/console/members/{user['id']}/invite-link",
                                data={"csrf_token": owner_client.csrf})
    assert refused.status_code == 412 and "chosen a password already" in body(refused)
    dev = app.test_client()
    signed = sign_in(dev, email="late@example.com", password="a fine new password")
    assert signed.status_code == 303
    assert dev.get(env_url(app_row, envs["Staging"])).status_code == 200
    assert dev.get(env_url(app_row, envs["Production"])).status_code == 403


def test_an_import_goes_into_several_environments_at_once_or_none(demo, owner_client,
                                                                  services, db):
    app_row, envs = demo
    url = env_url(app_row, envs["Staging"])
    put(services, envs["Production"], "SHARED", "old")
    ids = [envs["Staging"]["id"], envs["Production"]["id"]]
    text = 'SHARED="new"\nADDED="1"\n'
    preview = body(owner_client.post(url + "import", data={
        "text": text, "environment": ids, "csrf_token": owner_client.csrf}))
    assert "What the import would do in Staging" in preview
    assert "What the import would do in Production" in preview
    assert "Development" not in preview.split("<h2>Preview</h2>")[1].split("</form>")[0]
    fields = form_fields(preview)
    fields["environment"] = re.findall(r'name="environment" value="([^"]+)"', preview)
    assert owner_client.post(url + "import", data=fields).status_code == 303
    assert exported(owner_client, app_row, envs["Staging"]) == {"SHARED": "new", "ADDED": "1"}
    assert exported(owner_client, app_row, envs["Production"]) == {"SHARED": "new",
                                                                    "ADDED": "1"}
    assert exported(owner_client, app_row, envs["Development"]) == {}
    # a preview one of whose environments changed since: nothing is written anywhere
    preview = body(owner_client.post(url + "import", data={
        "text": 'LATE="x"\n', "environment": ids, "csrf_token": owner_client.csrf}))
    fields = form_fields(preview)
    fields["environment"] = ids
    put(services, envs["Production"], "MEANWHILE", "y")
    refused = owner_client.post(url + "import", data=fields)
    assert refused.status_code == 412
    assert "LATE" not in exported(owner_client, app_row, envs["Staging"])
    assert "LATE" not in exported(owner_client, app_row, envs["Production"])
