"""Apps, the app overview, environments and their secrets: list, reveal, edit, history, export."""

import json
import unicodedata
from urllib.parse import quote

from flask import Response, abort, g, redirect, request, url_for

from .. import mirror, secrets
from ..errors import InvalidRequest, PhaseError, PreconditionFailed, status_of
from ..paths import ROOT, folder_chain, normalize_path
from . import actions, dotenv
from .web import (PREFIX, back, bp, caller, posted, refused, render, signed_in,
                  unconfirmed, whole_number)

MASK = "\u2022" * 8
ENV_PAGE = "console.environment"


# -- apps ------------------------------------------------------------------------------------


@bp.route(PREFIX + "/apps/")
@signed_in
def apps():
    query = request.args.get("q", "").strip()
    rows = actions.visible_apps(caller())
    if query:
        rows = [row for row in rows if query.lower() in row["name"].lower()
                or query.lower() in (row["description"] or "").lower()]
    return render("apps.html", apps=rows, query=query)


@bp.route(PREFIX + "/apps/new", methods=["GET", "POST"])
@signed_in
def new_app():
    if not posted():
        return render("new_app.html", form={})
    try:
        app_row = actions.create_app(caller(), request.form.get("name"),
                                     request.form.get("description"))
    except PhaseError as exc:
        return refused("new_app.html", exc, form=request.form)
    return back("console.app_overview", "app_created", app_id=app_row["id"])


@bp.route(PREFIX + "/apps/<app_id>/")
@signed_in
def app_overview(app_id, revealed=None, opened=None, search=None):
    """One row per key; a row opens in place on every environment's value (hidden until
    revealed: ``revealed`` holds the values of the ``opened`` row after a reveal, or of
    every environment for a ``search`` of keys and values, whose rows are shown open)."""
    who = caller()
    app_row = actions.app(who, app_id)
    envs = actions.environments(who, app_row)
    listed = {env["id"]: actions.list_secrets(who, env) for env in envs}
    rows = compare_environments(envs, listed)
    for row in rows:  # the row's reveal names the key by one of its secrets (never by name)
        env, secret, _ = next(cell for cell in row["cells"] if cell[1] is not None)
        row["named"] = f"{env['id']}/{secret.id}"
    tags = sorted({tag for found in listed.values() for secret in found for tag in secret.tags})
    revealed = dict(revealed or {})
    for env in envs:  # config values are shown without asking, as Phase's console does
        revealed.update(config_values(who, env, listed[env["id"]], revealed))
    filters = {"tag": request.args.get("tag", ""), "type": request.args.get("type", "")}
    shown = filter_rows(rows, **filters)
    if search:
        shown = [row for row in shown if found_in(row, search, revealed)]
    return render("app.html", app=app_row, envs=envs, rows=shown, search=search,
                  mirror=actions.mirror_of(who, app_row),
                  total=len(rows), tags=tags, filters=filters, mask=MASK,
                  revealed=revealed, opened=opened,
                  counts={env_id: len(found) for env_id, found in listed.items()},
                  folder_counts={env_id: count_folders(found) for env_id, found in listed.items()})


@bp.route(PREFIX + "/apps/<app_id>/secrets/new", methods=["GET", "POST"])
@signed_in
def new_key(app_id):
    """One key in several environments at once (every one by default): a value for each,
    the same type, comment and tags; created in all of them or in none."""
    who = caller()
    app_row = actions.app(who, app_id)
    envs = actions.environments(who, app_row)
    page = {"app": app_row, "envs": envs}
    if not posted():
        return render("new_key.html", **page, form={"path": ROOT},
                      chosen={env["id"] for env in envs})
    chosen = set(request.form.getlist("environment"))
    try:
        key = dotenv.check_key(request.form.get("key", ""))
        if not chosen.intersection(env["id"] for env in envs):
            raise InvalidRequest("Choose at least one environment.")
        common = {"key": key, "comment": request.form.get("comment", ""),
                  "path": normalize_path(request.form.get("path") or ROOT),
                  "tags": _tags(request.form.get("tags")),
                  "type": request.form.get("type") or None}
        entries = [(env, secrets.parse_new_secrets({"secrets": [
                       common | {"value": typed("value-" + env["id"])}]})[0])
                   for env in envs if env["id"] in chosen]
        unresolved = {env["name"]: found for env, entry in entries if (
            found := unconfirmed_references(who, env, entry.value, key, common["path"]))}
        if unresolved:
            return render("new_key.html", **page, form=request.form, chosen=chosen,
                          unresolved=unresolved)
        actions.create_across(who, entries)
    except PhaseError as exc:
        return refused("new_key.html", exc, **page, form=request.form, chosen=chosen)
    return back("console.app_overview", "key_created", {"environments": len(entries)},
                app_id=app_id)


def count_folders(found):
    """How many folders the secrets' paths make (``/a/b`` is two)."""
    return len({folder for secret in found for folder, _, _ in folder_chain(secret.path)})


@bp.route(PREFIX + "/apps/<app_id>/mirror/sync", methods=["POST"])
@signed_in
def sync_mirror(app_id):
    """Pull a mirrored app's source now."""
    who = caller()
    app_row = actions.app(who, app_id)
    try:
        result = actions.sync_mirror(who, app_row)
    except mirror.MirrorError:
        return back("console.app_overview", "mirror_failed", app_id=app_id)
    return back("console.app_overview", "mirror_synced",
                {"created": result.created, "updated": result.updated,
                 "deleted": result.deleted}, app_id=app_id)


@bp.route(PREFIX + "/apps/<app_id>/reveal", methods=["POST"])
@signed_in
def reveal_across(app_id):
    """Reveal one key's value in every environment (named as ``ENV_ID/SECRET_ID`` by one of
    its secrets): JSON for the page's script, else the overview with that row open."""
    who = caller()
    env_id, _, secret_id = request.form.get("secret", "").partition("/")
    app_row, env = actions.environment(who, app_id, env_id)
    named = actions.get_secret(who, env, secret_id)
    revealed = {}
    for other in actions.environments(who, app_row):
        found = [secret.id for secret in actions.list_secrets(who, other, named.path)
                 if secret.key == named.key and secret.type != "sealed"]
        if found:
            revealed.update((found_id, revealed_value(item)) for found_id, item in
                            actions.reveal(who, other, found).items())
    if request.accept_mimetypes.best == "application/json":
        return Response(json.dumps(revealed), mimetype="application/json")
    return app_overview(app_id=app_id, revealed=revealed, opened=(named.path, named.key))


@bp.route(PREFIX + "/apps/<app_id>/search", methods=["POST"])
@signed_in
def search_values(app_id):
    """The overview's rows whose key or value (as revealed, references resolved) holds the
    text: every value searched is revealed, and recorded as read, environment by
    environment. A POST, so the text stays out of URLs and logs."""
    who = caller()
    text = request.form.get("q", "").strip()
    if not text:
        return back("console.app_overview", app_id=app_id)
    app_row = actions.app(who, app_id)
    revealed = {}
    for env in actions.environments(who, app_row):
        wanted = [secret.id for secret in actions.list_secrets(who, env)
                  if secret.type != "sealed"]
        if wanted:
            revealed.update((secret_id, revealed_value(item)) for secret_id, item in
                            actions.reveal(who, env, wanted).items())
    return app_overview(app_id=app_id, revealed=revealed, search=text)


def found_in(row, text, revealed):
    """Whether a row's key, or one of its revealed values, holds ``text`` (any case)."""
    needle = text.casefold()
    if needle in row["key"].casefold():
        return True
    return any(secret is not None and secret.id in revealed
               and needle in revealed[secret.id]["value"].casefold()
               for _, secret, _ in row["cells"])


def filter_rows(rows, tag="", type=""):  # noqa: A002 - the form's field name
    """The overview's rows that have, in some environment, a secret with the tag and of the
    type asked for. (The key search runs in the page: key names stay out of URLs.)"""
    def wanted(row):
        secrets_ = [secret for _, secret, _ in row["cells"] if secret is not None]
        return ((not tag or any(tag in secret.tags for secret in secrets_))
                and (not type or any(secret.type == type for secret in secrets_)))
    return [row for row in rows if wanted(row)]


def compare_environments(envs, listed):
    """One row per (path, key), folders first: per environment, the secret or None, and a
    state: "missing", "empty", "same" (as Production) or "present"."""
    production = next((env["id"] for env in envs if env["name"].lower() == "production"), None)
    by_position = {}
    for env in envs:
        for secret in listed[env["id"]]:
            by_position.setdefault((secret.path, secret.key), {})[env["id"]] = secret
    rows = []
    for (path, key), cells in sorted(by_position.items(),
                                     key=lambda item: (item[0][0] == ROOT, item[0])):
        reference = cells.get(production)
        states = []
        for env in envs:
            secret = cells.get(env["id"])
            if secret is None:
                state = "missing"
            elif secret.value == "":
                state = "empty"
            elif (reference is not None and env["id"] != production
                  and secret.value == reference.value):
                state = "same"
            else:
                state = "present"
            states.append((env, secret, state))
        rows.append({"path": path, "key": key, "cells": states})
    return rows


# -- an environment --------------------------------------------------------------------------


def _environment(app_id, env_id):
    who = caller()
    app_row, env = actions.environment(who, app_id, env_id)
    return who, app_row, env


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/")
@signed_in
def environment(app_id, env_id, revealed=None, status=200, error=None):
    who, app_row, env = _environment(app_id, env_id)
    path = normalize_path(request.values.get("path") or ROOT)  # a reveal posts its folder
    every = actions.list_secrets(who, env)
    here = [secret for secret in every if secret.path == path]
    prefix = path.rstrip("/") + "/"
    folders = sorted({secret.path[len(prefix):].split("/")[0] for secret in every
                      if secret.path.startswith(prefix) and secret.path != path})
    overrides = secrets.personal_overrides(who.services, who.principal, env,
                                           [secret.id for secret in here])
    revealed = dict(revealed or {})
    revealed.update(config_values(who, env, here, revealed))
    return render("environment.html", status, app=app_row, env=env, path=path,
                  folder_crumbs=_crumbs(path), folders=folders, secrets=here,
                  revealed=revealed, overrides=overrides, mask=MASK, error=error,
                  envs=actions.environments(who, app_row))


def config_values(caller_, env, listed, revealed):
    """The shown values of the ``config`` secrets among ``listed`` not revealed already (a
    read, recorded as any reveal is); none asked, nothing read."""
    wanted = [secret.id for secret in listed
              if secret.type == "config" and secret.id not in revealed]
    if not wanted:
        return {}
    return {secret_id: revealed_value(item)
            for secret_id, item in actions.reveal(caller_, env, wanted).items()}


def folder_arg(path):
    """A folder as the environment page's ``path`` argument (the root needs none)."""
    return path if path != ROOT else None


def back_to_folder(env, path, notice, counts=None):
    """Post/redirect/get to the environment page at the folder ``path``, with a notice."""
    return back(ENV_PAGE, notice, counts, app_id=env["app_id"], env_id=env["id"],
                path=folder_arg(path))


def _crumbs(path):
    crumbs, here = [("/", ROOT)], ""
    for name in path.strip("/").split("/"):
        if name:
            here += "/" + name
            crumbs.append((name, here))
    return crumbs


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/reveal", methods=["POST"])
@signed_in
def reveal(app_id, env_id):
    """Reveal values: JSON for the page's script, else the page with those values shown.
    "Reveal all" reveals (and records as read) the folder it was asked in, nothing else."""
    who, _, env = _environment(app_id, env_id)
    ids = request.form.getlist("secret")
    if request.form.get("all"):
        path = normalize_path(request.form.get("path") or ROOT)
        ids = [secret.id for secret in actions.list_secrets(who, env, path)
               if secret.type != "sealed"]
    sealed = {secret.id for secret in actions.list_secrets(who, env) if secret.type == "sealed"}
    found = actions.reveal(who, env, [secret_id for secret_id in ids if secret_id not in sealed])
    revealed = {secret_id: revealed_value(item) for secret_id, item in found.items()}
    if request.accept_mimetypes.best == "application/json":
        return Response(json.dumps(revealed), mimetype="application/json")
    return environment(app_id=app_id, env_id=env_id, revealed=revealed)


def revealed_value(item):
    """What a reveal shows: the value as resolved, whether a reference stayed unresolved, and
    the caller's active override."""
    override = item.get("override")
    return {
        "value": item["value"],
        "unresolved": "${" in item["value"],
        "override": override["value"] if override and override["isActive"] else None,
    }


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/secrets/new",
          methods=["GET", "POST"])
@signed_in
def new_secret(app_id, env_id):
    who, app_row, env = _environment(app_id, env_id)
    path = normalize_path(request.values.get("path") or ROOT)
    if not posted():
        form = {"path": path}
        if request.args.get("like"):  # "add value": the key of a secret of another environment
            _, like_env = actions.environment(who, app_id, request.args.get("like_env"))
            like = actions.get_secret(who, like_env, request.args["like"])
            form.update(key=like.key, path=like.path, type=like.type, comment=like.comment,
                        tags=", ".join(like.tags), env_version=env["version"])
        return render("secret_form.html", app=app_row, env=env, secret=None, form=form,
                      override=None)
    entry = {"key": request.form.get("key", ""), "value": typed("value"),
             "comment": request.form.get("comment", ""), "path": path,
             "tags": _tags(request.form.get("tags")), "type": request.form.get("type") or None}
    try:
        entry["key"] = dotenv.check_key(entry["key"])
        unresolved = unconfirmed_references(who, env, entry["value"], entry["key"], path)
        if unresolved:
            return render("secret_form.html", app=app_row, env=env, secret=None,
                          form=request.form, override=None, unresolved=unresolved)
        # "Add value" was opened beside the other environments' values: it carries the
        # version this environment had then (a plain new secret overwrites nothing)
        actions.create_secrets(who, env, secrets.parse_new_secrets({"secrets": [entry]}),
                               page_version(required=False))
    except PhaseError as exc:
        return refused("secret_form.html", exc, app=app_row, env=env, secret=None,
                       form=request.form, override=None)
    return back_to_folder(env, path, "secret_created")


def unconfirmed_references(who, env, value, key, path):
    """The value's references that would not resolve, unless the form said to save anyway
    (``confirm_references``): a form asks before saving such a value."""
    if request.form.get("confirm_references") == "yes":
        return []
    return actions.unresolved_references(who, env, value, key, normalize_path(path or ROOT))


def page_version(required=True):
    """The environment version a single-secret form was opened at (``env_version``)."""
    found = whole_number(request.values.get("env_version"), "env_version")
    if found is None and required:
        raise PreconditionFailed(actions.CHANGED_SINCE)
    return found


def typed(field):
    """A value as typed in a textarea: browsers send its line breaks as CR LF (HTML's form
    encoding), whatever was typed or pasted; a PEM key pasted is stored with LF, as the
    Phase CLI and the API's clients store it."""
    return request.form.get(field, "").replace("\r\n", "\n")


def _secret(app_id, env_id, secret_id):
    """(caller, app, environment, live secret) the URL names."""
    who, app_row, env = _environment(app_id, env_id)
    return who, app_row, env, actions.get_secret(who, env, secret_id)


def _tags(text):
    return [name.strip() for name in (text or "").split(",") if name.strip()]


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/secrets/<secret_id>/edit",
          methods=["GET", "POST"])
@signed_in
def edit_secret(app_id, env_id, secret_id):
    who, app_row, env, secret = _secret(app_id, env_id, secret_id)
    override = secrets.personal_overrides(who.services, who.principal, env,
                                          [secret.id]).get(secret.id)
    if not posted():
        form = {"key": secret.key, "comment": secret.comment, "path": secret.path,
                "tags": ", ".join(secret.tags), "type": secret.type,
                "env_version": env["version"]}
        if secret.type != "sealed":  # opening the editor reveals the value, as a read
            actions.reveal(who, env, [secret.id])
            form["value"] = secret.value
        return render("secret_form.html", app=app_row, env=env, secret=secret, form=form,
                      override=override)
    change = {"id": secret.id, "key": request.form.get("key") or secret.key,
              "comment": request.form.get("comment", ""),
              "path": request.form.get("path") or secret.path,
              "tags": _tags(request.form.get("tags")),
              "type": request.form.get("type") or secret.type}
    if secret.type != "sealed" or request.form.get("value"):
        change["value"] = typed("value")
    override_value = typed("override_value")
    if override_value or override is not None:
        change["override"] = {"value": override_value,
                              "isActive": bool(request.form.get("override_active"))
                              and bool(override_value)}
    try:
        if change["key"].strip().upper() != secret.key:  # a key made by the API may stay
            change["key"] = dotenv.check_key(change["key"])
        if change.get("value", secret.value) != secret.value:
            unresolved = unconfirmed_references(who, env, change["value"],
                                                change["key"].strip().upper(), change["path"])
            if unresolved:
                return render("secret_form.html", app=app_row, env=env, secret=secret,
                              form=request.form, override=override, unresolved=unresolved)
        actions.update_secrets(who, env, secrets.parse_secret_changes({"secrets": [change]}),
                               page_version())
    except PhaseError as exc:
        return refused("secret_form.html", exc, app=app_row, env=env, secret=secret,
                       form=request.form, override=override)
    return back_to_folder(env, normalize_path(change["path"]), "secret_saved")


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/secrets/<secret_id>/in-place",
          methods=["POST"])
@signed_in
def edit_in_place(app_id, env_id, secret_id):
    """The page script's editor in a row: ``step=open`` answers the value (a read, as the
    full form's), comment, tags and the environment's version; ``step=save`` writes the
    value (kept for a sealed secret), comment and tags if the environment is still at the
    ``env_version`` it was opened at (never the key, path, type or override: the full form
    does those). JSON for the script; without it, the full form or the folder again."""
    who, _, env, secret = _secret(app_id, env_id, secret_id)
    script = request.accept_mimetypes.best == "application/json"
    if request.form.get("step") != "save":
        if not script:
            return redirect(env_url("console.edit_secret", env, secret_id=secret_id), 303)
        value = None
        if secret.type != "sealed":  # the value as written, read as the full form reads it
            actions.reveal(who, env, [secret.id])
            value = secret.value
        return _json({"value": value, "comment": secret.comment, "tags": list(secret.tags),
                      "sealed": secret.type == "sealed", "env_version": env["version"]})
    change = {"id": secret.id, "comment": request.form.get("comment", ""),
              "tags": _tags(request.form.get("tags"))}
    if secret.type != "sealed":
        change["value"] = typed("value")
        unresolved = (unconfirmed_references(who, env, change["value"], secret.key, secret.path)
                      if change["value"] != secret.value else [])
        if unresolved and script:
            return _json({"error": UNRESOLVED.format(", ".join(unresolved)),
                          "unresolved": unresolved}, 409)
    try:
        (saved,) = actions.update_secrets(
            who, env, secrets.parse_secret_changes({"secrets": [change]}), page_version())
    except PhaseError as exc:
        if not script:
            raise
        return _json({"error": exc.message}, status_of(exc))
    if not script:
        return back_to_folder(env, saved.path, "secret_saved")
    fresh = actions.fresh_environment(who, env)
    shown = {"comment": saved.comment, "tags": list(saved.tags),
             "env_version": fresh["version"]}
    if saved.type != "sealed":
        shown.update(revealed_value(actions.reveal(who, fresh, [saved.id])[saved.id]))
    return _json(shown)


UNRESOLVED = ("Not saved yet: {} would not resolve here (a missing key, environment or app, "
              "or one you may not read). Save again to save it anyway.")


def _json(document, status=200):
    return Response(json.dumps(document), status=status, mimetype="application/json")


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/secrets/<secret_id>/delete",
          methods=["GET", "POST"])
@signed_in
def delete_secret(app_id, env_id, secret_id):
    who, _, env, secret = _secret(app_id, env_id, secret_id)
    overview = request.values.get("from") == "overview"  # a GET only asks
    cancel = (url_for("console.app_overview", app_id=app_id) if overview
              else env_url(ENV_PAGE, env, path=folder_arg(secret.path)))
    # The page that asks carries the version it was asked at (its question shows the secret
    # as it is then), or the version of the page the delete button was on. (The overview's
    # links carry none: 300 of them would cost the page a tenth of its time.)
    seen = page_version(required=False)
    asked = unconfirmed(f"Delete {secret.key} from {env['name']}?", "Delete secret", cancel,
                        "It can be found and restored from the environment's deleted secrets.",
                        **{"from": "overview" if overview else None,
                           "env_version": str(env["version"] if seen is None else seen)})
    if asked is not None:
        return asked
    actions.delete_secrets(who, env, [secret.id], page_version())
    if overview:
        return back("console.app_overview", "secret_deleted", app_id=app_id)
    return back_to_folder(env, secret.path, "secret_deleted")


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/secrets/<secret_id>/history",
          methods=["GET", "POST"])
@signed_in
def secret_history(app_id, env_id, secret_id):
    """Every version with its changes; a POST reveals the values of one version's change."""
    shown = whole_number(request.form.get("version"), "version") if posted() else None
    return history_page(app_id, env_id, secret_id, shown)


def history_page(app_id, env_id, secret_id, shown=None, status=200, error=None):
    who, app_row, env = _environment(app_id, env_id)
    versions = actions.secret_versions(who, env, secret_id)
    live = any(secret.id == secret_id for secret in actions.list_secrets(who, env))
    sealed = any(version.value is None for version in versions)
    return render("history.html", status, app=app_row, env=env, secret_id=secret_id,
                  live=live, versions=history_rows(versions),
                  shown=None if sealed else shown, sealed=sealed, error=error)


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/deleted")
@signed_in
def deleted_secrets(app_id, env_id):
    who, app_row, env = _environment(app_id, env_id)
    return render("deleted.html", app=app_row, env=env,
                  deleted=actions.deleted_secrets(who, env))


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/deleted/<secret_id>/restore",
          methods=["POST"])
@signed_in
def restore_deleted(app_id, env_id, secret_id):
    who, app_row, env = _environment(app_id, env_id)
    try:
        restored = actions.restore_deleted(who, env, secret_id, page_version())
    except PhaseError as exc:
        return refused("deleted.html", exc, app=app_row, env=env,
                       deleted=actions.deleted_secrets(who, env))
    return back_to_folder(env, restored.path, "secret_restored")


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/secrets/<secret_id>/restore",
          methods=["POST"])
@signed_in
def restore_secret(app_id, env_id, secret_id):
    """Make an older version current again: a new version, through the history's restore."""
    who, _, env = _environment(app_id, env_id)
    wanted = whole_number(request.form.get("version"), "version", low=1)
    if wanted is None:
        abort(404)
    try:
        actions.restore_secret(who, env, secret_id, wanted, page_version())
    except PreconditionFailed as exc:  # the page again, as it is now, saying why
        return history_page(app_id, env_id, secret_id, status=412, error=exc.message)
    return back("console.secret_history", "version_restored", {"version": wanted}, app_id=app_id,
                env_id=env_id, secret_id=secret_id)


HISTORY_FIELDS = ("key", "value", "comment", "tags", "path", "type")


def history_rows(versions):
    """Versions (``history.SecretVersion``, oldest first) newest first, each with the fields
    that differ from the version before it. A sealed secret's versions carry no value
    (``history.secret_history``), so no value, nor a change of one, is shown."""
    rows, before = [], None
    for version in versions:
        fields = {"key": version.key, "value": version.value, "comment": version.comment,
                  "tags": ", ".join(version.tags), "path": version.path, "type": version.type}
        changes = [(name, None if before is None else before[name], fields[name])
                   for name in HISTORY_FIELDS if before is None or before[name] != fields[name]]
        if version.value is None:
            changes = [change for change in changes if change[0] != "value"]
        rows.append({"version": version.version, "event": version.event, "key": version.key,
                     "type": version.type, "created_at": version.created_at,
                     "restored_from": version.restored_from, "changes": changes,
                     "actor": version.actor.name if version.actor else None})
        before = fields
    return list(reversed(rows))


# -- export ----------------------------------------------------------------------------------


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/export.<kind>")
@signed_in
def export(app_id, env_id, kind):
    if kind not in ("env", "json"):
        abort(404)
    """A folder's values as ``.env`` or JSON (``{"KEY": "value"}``; the folder ``path``, the
    top by default: one file per folder, no key of a folder mixed with another's), or with
    ``paths=yes`` the whole environment as JSON by folder (``{"/": {...}, "/db": {...}}``)."""
    who, app_row, env = _environment(app_id, env_id)
    every = kind == "json" and request.args.get("paths") == "yes"
    path = normalize_path(request.args.get("path") or ROOT)
    chosen = [secret for secret in actions.list_secrets(who, env, None if every else path)
              if secret.type != "sealed"]
    found = actions.reveal(who, env, [secret.id for secret in chosen])
    values = [(secret, found[secret.id]["value"]) for secret in chosen if secret.id in found]
    name = f"{app_row['name']}-{env['name']}"
    if path != ROOT and not every:
        name += path.replace("/", "-")
    if kind == "env":
        body, mimetype = dotenv.render(values), "text/plain"
    elif every:
        folders = {}
        for secret, value in sorted(values, key=lambda pair: pair[0].path):
            folders.setdefault(secret.path, {})[secret.key] = value
        body, mimetype = json.dumps(folders, indent=2) + "\n", "application/json"
        name += "-paths"
    else:
        body = json.dumps({secret.key: value for secret, value in values}, indent=2) + "\n"
        mimetype = "application/json"
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": attachment(f"{name}.{kind}")})


# RFC 5987's attr-char: what ``filename*`` may carry unescaped (as Werkzeug's send_file)
ATTR_CHARS = "!#$&+-.^_`|~"


def attachment(filename: str) -> str:
    """A download's Content-Disposition (RFC 6266): ``filename="..."`` in ASCII for every
    browser and, for a name that is not ASCII (an app named in Cyrillic or CJK), the exact
    name as ``filename*=UTF-8''...``, which browsers prefer. A header carries only Latin-1
    (PEP 3333): the name itself there would fail the answer after it was chosen."""
    fallback = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode()
    fallback = "".join(c for c in fallback if c.isprintable() and c not in '"\\')
    if fallback.startswith("-"):  # the app's name was all non-ASCII
        fallback = "secrets" + fallback
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return (f'attachment; filename="{fallback}"; '
            f"filename*=UTF-8''{quote(filename, safe=ATTR_CHARS)}")


@bp.app_template_global()
def env_url(endpoint, env, **values):
    return url_for(endpoint, app_id=env["app_id"], env_id=env["id"], **values)


@bp.app_template_global()
def me_may(resource, action, app_level=False):
    return g.signed_in is not None and g.signed_in.principal.may(resource, action,
                                                                 app_level=app_level)


# -- bulk edit and .env import ---------------------------------------------------------------


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/bulk-edit", methods=["GET", "POST"])
@signed_in
def bulk_edit(app_id, env_id):
    """The folder's secrets as one .env text: edited, then a preview of the keys created,
    changed and deleted, then saved at once (a delete only once ticked). Every step carries
    the environment version the editor was opened at."""
    who, app_row, env = _environment(app_id, env_id)
    path = normalize_path(request.values.get("path") or ROOT)
    page = {"app": app_row, "env": env, "path": path}
    if not posted():
        current = [secret for secret in actions.list_secrets(who, env, path)
                   if actions.in_bulk_edit(secret)]
        found = actions.reveal(who, env, [secret.id for secret in current])
        text = dotenv.render([(secret, secret.value) for secret in current
                              if secret.id in found])
        return render("bulk_edit.html", **page, text=text, version=env["version"], plan=None)
    text = request.form.get("text", "")
    version = whole_number(request.form.get("version"), "version")
    step = request.form.get("step")
    if step == "edit":  # back from the preview to the text
        return render("bulk_edit.html", **page, text=text, version=version, plan=None)
    try:
        current = actions.list_secrets(who, env, path)
        pairs = _pairs(text, current)
        if step != "apply" or (not request.form.get("confirm_delete")
                               and actions.plan_changes(current, pairs,
                                                        delete_missing=True).deleted):
            if version != env["version"]:  # said now rather than after the preview
                raise PreconditionFailed(actions.CHANGED_SINCE)
            plan = actions.plan_changes(current, pairs, delete_missing=True)
            error = (DELETE_UNCONFIRMED if step == "apply" else None)
            return render("bulk_edit.html", 400 if error else 200, **page, text=text,
                          version=version, plan=plan, error=error)
        plan = actions.apply_pairs(who, env, path, pairs, version, delete_missing=True)
    except PhaseError as exc:
        return refused("bulk_edit.html", exc, **page, text=text, version=version, plan=None)
    return back_to_folder(env, path, "bulk_saved", _counts(plan))


DELETE_UNCONFIRMED = "Nothing was saved: tick the box to confirm the deletions first."


def _pairs(text, current=()):
    """The text's pairs; keys the folder holds already (made through the API) may stay."""
    try:
        return dotenv.parse(text, known={secret.key for secret in current})
    except dotenv.DotenvError as exc:
        raise InvalidRequest(str(exc)) from None


def _counts(plan):
    return {"created": len(plan.created), "updated": len(plan.updated),
            "deleted": len(plan.deleted), "unchanged": len(plan.unchanged)}


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/import", methods=["GET", "POST"])
@signed_in
def import_env(app_id, env_id):
    """Paste or upload a .env into this environment's folder, or the same folder of several
    of the app's environments: first a preview per environment (created / updated /
    unchanged), then applied to all of them at once, each at the version it was previewed at
    (``version`` for this one, ``version-<id>`` for the others), or to none."""
    who, app_row, env = _environment(app_id, env_id)
    path = normalize_path(request.values.get("path") or ROOT)
    envs = actions.environments(who, app_row)
    page = {"app": app_row, "env": env, "path": path, "envs": envs}
    if not posted():
        return render("import.html", **page, plans=None, text="", version=env["version"],
                      chosen={env["id"]})
    upload = request.files.get("file")
    text = request.form.get("text", "")
    if upload is not None and upload.filename:
        text = upload.read().decode("utf-8", errors="replace")
    version = whole_number(request.form.get("version"), "version")
    chosen = set(request.form.getlist("environment")) or {env["id"]}
    targets = [other for other in envs if other["id"] in chosen]
    try:
        if not targets:
            raise InvalidRequest("Choose at least one environment.")
        versions = {other["id"]: version if other["id"] == env["id"] else whole_number(
            request.form.get("version-" + other["id"]), "version") for other in targets}
        current = {other["id"]: actions.list_secrets(who, other, path) for other in targets}
        pairs = _pairs(text, [secret for found in current.values() for secret in found])
        if not pairs:
            raise InvalidRequest("The file holds no KEY=value line.")
        if request.form.get("step") != "apply":
            plans = [(other, actions.plan_changes(current[other["id"]], pairs,
                                                  delete_missing=False)) for other in targets]
            return render("import.html", **page, plans=plans, text=text,
                          version=env["version"], chosen=chosen)
        with who.services.db.transaction():
            applied = [actions.apply_pairs(who, other, path, pairs, versions[other["id"]],
                                           delete_missing=False) for other in targets]
    except PhaseError as exc:
        return refused("import.html", exc, **page, plans=None, text=text, version=version,
                       chosen=chosen)
    counts = {name: sum(number[name] for number in map(_counts, applied))
              for name in ("created", "updated", "deleted", "unchanged")}
    return back_to_folder(env, path, "bulk_saved", counts)
