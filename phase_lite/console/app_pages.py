"""An app's environments (create, rename, reorder, delete) and its settings (name,
description, encryption, deletion), through the domain functions the API and the admin
command use. Deleting asks the visitor to type the name of what goes, with or without script."""

from flask import request, url_for

from ..errors import InvalidRequest, PhaseError
from . import actions
from .web import PREFIX, back, bp, caller, refused, render, signed_in

OVERVIEW = "console.app_overview"
TYPED_FIELD = "typed_name"
NOT_TYPED = "The name you typed does not match {name}: nothing was deleted."


def typed_confirmation(name):
    """Refuse unless the visitor typed ``name`` exactly (the typed-confirmation form)."""
    if request.form.get(TYPED_FIELD, "").strip() != name:
        raise InvalidRequest(NOT_TYPED.format(name=name))


def ask_to_type(name, question, detail, button, cancel_url, error=None):
    """The typed-confirmation page (a GET asks; a refused POST asks again)."""
    return render("typed_confirm.html", 400 if error else 200, question=question,
                  detail=detail, name=name, button=button, cancel_url=cancel_url,
                  field=TYPED_FIELD, error=error, nav="apps")


# -- environments ----------------------------------------------------------------------------


@bp.route(PREFIX + "/apps/<app_id>/environments/new", methods=["GET", "POST"])
@signed_in
def new_environment(app_id):
    who = caller()
    app_row = actions.app(who, app_id)
    actions.require(who, "Environments", "create", "environments", app_level=True)
    page = {"app": app_row, "env": None}
    if request.method == "GET":
        return render("environment_form.html", **page, form={})
    try:
        actions.create_environment(who, app_row, request.form.get("name"))
    except PhaseError as exc:
        return refused("environment_form.html", exc, **page, form=request.form)
    return back(OVERVIEW, "environment_created", app_id=app_id)


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/rename", methods=["GET", "POST"])
@signed_in
def rename_environment(app_id, env_id):
    who = caller()
    app_row, env = actions.environment(who, app_id, env_id)
    actions.require(who, "Environments", "update", "environments", app_level=True)
    page = {"app": app_row, "env": env}
    if request.method == "GET":
        return render("environment_form.html", **page, form={"name": env["name"]})
    try:
        actions.rename_environment(who, env, request.form.get("name"))
    except PhaseError as exc:
        return refused("environment_form.html", exc, **page, form=request.form)
    return back(OVERVIEW, "environment_renamed", app_id=app_id)


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/move", methods=["POST"])
@signed_in
def move_environment(app_id, env_id):
    """Move an environment just before or just after another (the form names which)."""
    who = caller()
    _, env = actions.environment(who, app_id, env_id)
    place = "before" if request.form.get("before") else "after"
    actions.move_environment(who, env, place, request.form.get(place))
    return back(OVERVIEW, "environment_moved", app_id=app_id)


@bp.route(PREFIX + "/apps/<app_id>/environments/<env_id>/delete", methods=["GET", "POST"])
@signed_in
def delete_environment(app_id, env_id):
    who = caller()
    _, env = actions.environment(who, app_id, env_id)
    actions.require(who, "Environments", "delete", "environments", app_level=True)
    asking = {"name": env["name"], "question": f"Delete the environment {env['name']}?",
              "detail": "Its secrets, their history and every access grant to it are deleted "
                        "with it. This cannot be undone.",
              "button": f"Delete {env['name']}",
              "cancel_url": url_for(OVERVIEW, app_id=app_id)}
    if request.method == "GET":
        return ask_to_type(**asking)
    try:
        typed_confirmation(env["name"])
    except InvalidRequest as exc:
        return ask_to_type(**asking, error=exc.message)
    actions.delete_environment(who, env)
    return back(OVERVIEW, "environment_deleted", app_id=app_id)


# -- app settings ----------------------------------------------------------------------------


@bp.route(PREFIX + "/apps/<app_id>/settings", methods=["GET", "POST"])
@signed_in
def app_settings(app_id):
    """Name and description, what encrypts the app's secrets, and the danger zone."""
    who = caller()
    app_row = actions.app(who, app_id)
    page = {"app": app_row, "encryption": actions.encryption(who, app_row)}
    if request.method == "GET":
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
    asking = {"name": app_row["name"], "question": f"Delete the app {app_row['name']}?",
              "detail": "Every environment, secret, secret history and access grant of the app "
                        "is deleted with it, and its data key is destroyed. Service accounts and "
                        "tokens stay. This cannot be undone.",
              "button": f"Delete app {app_row['name']}",
              "cancel_url": url_for("console.app_settings", app_id=app_id)}
    if request.method == "GET":
        return ask_to_type(**asking)
    try:
        typed_confirmation(app_row["name"])
    except InvalidRequest as exc:
        return ask_to_type(**asking, error=exc.message)
    actions.delete_app(who, app_row)
    return back("console.apps", "app_deleted")
