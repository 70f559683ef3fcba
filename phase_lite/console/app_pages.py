"""An app's environments (create, rename, reorder, delete) and its settings (name,
description, encryption, deletion), through the domain functions the API and the admin
command use. Deleting asks the visitor to type the name of what goes, with or without script."""

from flask import request, url_for

from ..errors import InvalidRequest, PhaseError
from . import actions
from .web import PREFIX, back, bp, caller, posted, refused, render, signed_in

OVERVIEW = "console.app_overview"
TYPED_FIELD = "typed_name"
NOT_TYPED = "The name you typed does not match {name}: nothing was deleted."


def typed_confirmation(name):
    """Refuse unless the visitor typed ``name`` exactly (the typed-confirmation form)."""
    if request.form.get(TYPED_FIELD, "").strip() != name:
        raise InvalidRequest(NOT_TYPED.format(name=name))


def delete_after_typing(name, question, detail, button, cancel_url, delete):
    """Ask the visitor to type ``name`` (a GET asks; a POST with another name asks again, with
    the reason, and deletes nothing); then return ``delete()`` (its redirect)."""
    asking = {"question": question, "detail": detail, "name": name, "button": button,
              "cancel_url": cancel_url, "field": TYPED_FIELD, "nav": "apps"}
    if not posted():
        return render("typed_confirm.html", **asking)
    try:
        typed_confirmation(name)
    except InvalidRequest as exc:
        return refused("typed_confirm.html", exc, **asking)
    return delete()


# -- environments ----------------------------------------------------------------------------


def environment_form(page, name, save, notice):
    """The environment's name form (new or rename): ``save(name)`` on POST, the form again
    with the domain's message when refused, else the app page with ``notice``."""
    if not posted():
        return render("environment_form.html", **page, form={"name": name})
    try:
        save(request.form.get("name"))
    except PhaseError as exc:
        return refused("environment_form.html", exc, **page, form=request.form)
    return back(OVERVIEW, notice, app_id=page["app"]["id"])


def _environment_to_change(app_id, env_id, action):
    """(caller, app, environment) the URL names, when the caller's role may ``action``
    environments."""
    who = caller()
    app_row, env = actions.environment(who, app_id, env_id)
    actions.require(who, "Environments", action, "environments", app_level=True)
    return who, app_row, env


@bp.route(PREFIX + "/apps/<app_id>/environments/new", methods=["GET", "POST"])
@signed_in
def new_environment(app_id):
    who = caller()
    app_row = actions.app(who, app_id)
    actions.require(who, "Environments", "create", "environments", app_level=True)
    return environment_form({"app": app_row, "env": None}, "",
                            lambda name: actions.create_environment(who, app_row, name),
                            "environment_created")


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/rename", methods=["GET", "POST"])
@signed_in
def rename_environment(app_id, env_id):
    who, app_row, env = _environment_to_change(app_id, env_id, "update")
    return environment_form({"app": app_row, "env": env}, env["name"],
                            lambda name: actions.rename_environment(who, env, name),
                            "environment_renamed")


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/move", methods=["POST"])
@signed_in
def move_environment(app_id, env_id):
    """Move an environment just before or just after another (the form names which)."""
    who, _, env = _environment_to_change(app_id, env_id, "update")
    place = "before" if request.form.get("before") else "after"
    actions.move_environment(who, env, place, request.form.get(place))
    return back(OVERVIEW, "environment_moved", app_id=app_id)


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/delete", methods=["GET", "POST"])
@signed_in
def delete_environment(app_id, env_id):
    who, _, env = _environment_to_change(app_id, env_id, "delete")

    def delete():
        actions.delete_environment(who, env)
        return back(OVERVIEW, "environment_deleted", app_id=app_id)

    return delete_after_typing(
        env["name"], f"Delete the environment {env['name']}?",
        "Its secrets, their history and every access grant to it are deleted with it. This "
        "cannot be undone.", f"Delete {env['name']}", url_for(OVERVIEW, app_id=app_id), delete)


# -- app settings ----------------------------------------------------------------------------


@bp.route(PREFIX + "/apps/<app_id>/settings", methods=["GET", "POST"])
@signed_in
def app_settings(app_id):
    """Name and description, what encrypts the app's secrets, and the danger zone."""
    who = caller()
    app_row = actions.app(who, app_id)
    page = {"app": app_row, "encryption": actions.encryption(who, app_row)}
    if not posted():
        return render("app_settings.html", **page, form=app_row)
    try:
        actions.update_app(who, app_row, request.form.get("name"),
                           request.form.get("description"))
    except PhaseError as exc:
        return refused("app_settings.html", exc, **page, form=request.form)
    return back("console.app_settings", "app_saved", app_id=app_id)


@bp.route(PREFIX + "/apps/<app_id>/delete", methods=["GET", "POST"])
@signed_in
def delete_app(app_id):
    who = caller()
    app_row = actions.app(who, app_id)
    actions.require(who, "Apps", "delete", "apps")

    def delete():
        actions.delete_app(who, app_row)
        return back("console.apps", "app_deleted")

    return delete_after_typing(
        app_row["name"], f"Delete the app {app_row['name']}?",
        "Every environment, secret, secret history and access grant of the app is deleted with "
        "it, and its data key is destroyed. Service accounts and tokens stay. This cannot be "
        "undone.", f"Delete app {app_row['name']}",
        url_for("console.app_settings", app_id=app_id), delete)
