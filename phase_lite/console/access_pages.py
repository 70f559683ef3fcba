"""Service accounts and their tokens, members and invitations, the audit log, the account."""

from datetime import datetime, timedelta, timezone

from flask import g, request, url_for

from ..errors import DoesNotExist, InvalidRequest, PhaseError, status_of
from ..store import format_time
from . import actions, sessions
from .web import (PREFIX, absolute_link, ask_then, back, bp, caller, posted, refused, render,
                  services, signed_in, throttle, throttled_text, visitor_ip, whole_number)

TOKEN_EXPIRIES = (("", "Never"), ("86400", "1 day"), ("604800", "7 days"),
                  ("2592000", "30 days"), ("7776000", "90 days"), ("31536000", "1 year"))
DEFAULT_TOKEN_EXPIRY = TOKEN_EXPIRIES[0]  # the account page's form offers it first


def _expires_in(text):
    if not text:
        return None
    if text not in {value for value, _ in TOKEN_EXPIRIES}:
        raise InvalidRequest("Choose one of the offered expiries.")
    return int(text)


# -- service accounts ------------------------------------------------------------------------


@bp.route(PREFIX + "/service-accounts/")
@signed_in
def service_accounts():
    return render("service_accounts.html", accounts=actions.service_accounts(caller()))


@bp.route(PREFIX + "/service-accounts/new", methods=["GET", "POST"])
@signed_in
def new_service_account():
    who = caller()
    roles = [role for role in actions.roles(who) if not role["global_access"]]
    if not posted():
        return render("new_service_account.html", roles=roles, form={})
    try:
        sa, token = actions.create_service_account(who, request.form.get("name"),
                                                   request.form.get("role_id"))
    except PhaseError as exc:
        return refused("new_service_account.html", exc, roles=roles, form=request.form)
    # Shown once, on this answer only (post/redirect/get would need to keep the token).
    return render("token_created.html", token=token, owner=sa["name"],
                  back_url=url_for("console.service_account", sa_id=sa["id"]))


@bp.route(PREFIX + "/service-accounts/<sa_id>/")
@signed_in
def service_account(sa_id):
    who = caller()
    sa, tokens, granted = actions.service_account(who, sa_id)
    granted_ids = {env["id"] for _, _, envs in granted for env in envs}
    return render("service_account.html", sa=sa, tokens=tokens, granted=granted,
                  granted_ids=granted_ids, choices=actions.granted_environment_choices(who),
                  roles=[role for role in actions.roles(who) if not role["global_access"]])


@bp.route(PREFIX + "/service-accounts/<sa_id>/role", methods=["POST"])
@signed_in
def service_account_role(sa_id):
    actions.change_service_account_role(caller(), sa_id, request.form.get("role_id"))
    return back("console.service_account", "role_changed", sa_id=sa_id)


@bp.route(PREFIX + "/service-accounts/<sa_id>/tokens/new", methods=["GET", "POST"])
@signed_in
def new_service_token(sa_id):
    who = caller()
    sa, _, _ = actions.service_account(who, sa_id)
    if not posted():
        return render("new_token.html", owner=sa["name"], expiries=TOKEN_EXPIRIES, form={},
                      cancel_url=url_for("console.service_account", sa_id=sa_id))
    try:
        token = actions.issue_service_token(who, sa_id, request.form.get("name"),
                                            _expires_in(request.form.get("expires_in")))
    except PhaseError as exc:
        return refused("new_token.html", exc, owner=sa["name"], expiries=TOKEN_EXPIRIES,
                       form=request.form,
                       cancel_url=url_for("console.service_account", sa_id=sa_id))
    return render("token_created.html", token=token, owner=sa["name"],
                  back_url=url_for("console.service_account", sa_id=sa_id))


@bp.route(PREFIX + "/service-accounts/<sa_id>/tokens/<token_id>/revoke", methods=["POST"])
@signed_in
def revoke_service_token(sa_id, token_id):
    who = caller()
    sa, tokens, _ = actions.service_account(who, sa_id)
    name = next((token["name"] for token in tokens if token["id"] == token_id), None)
    if name is None:
        raise DoesNotExist("Token not found.")
    return ask_then(f"Revoke the token {name} of {sa['name']}?", "Revoke token",
                    url_for("console.service_account", sa_id=sa_id),
                    "Anything using it loses access at once.",
                    lambda: actions.revoke_service_token(who, sa_id, token_id),
                    "console.service_account", "token_revoked", sa_id=sa_id)


@bp.route(PREFIX + "/service-accounts/<sa_id>/access", methods=["POST"])
@signed_in
def service_account_access(sa_id):
    actions.set_service_account_access(caller(), sa_id, set(request.form.getlist("environment")))
    return back("console.service_account", "access_saved", sa_id=sa_id)


@bp.route(PREFIX + "/service-accounts/<sa_id>/delete", methods=["POST"])
@signed_in
def delete_service_account(sa_id):
    who = caller()
    sa, _, _ = actions.service_account(who, sa_id)
    return ask_then(f"Delete the service account {sa['name']}?", "Delete service account",
                    url_for("console.service_account", sa_id=sa_id),
                    "Its tokens stop working at once.",
                    lambda: actions.delete_service_account(who, sa_id),
                    "console.service_accounts", "service_account_deleted")


# -- members ---------------------------------------------------------------------------------


@bp.route(PREFIX + "/members/")
@signed_in
def members(invite_link=None, status=200, error=None):
    who = caller()
    return render("members.html", status, members=actions.members(who),
                  roles=actions.assignable_roles(who),
                  choices=actions.granted_environment_choices(who),
                  invite_link=invite_link, error=error)


@bp.route(PREFIX + "/members/invite", methods=["POST"])
@signed_in
def invite_member():
    try:
        token = actions.invite_member(caller(), request.form.get("email"),
                                      request.form.get("role_id"),
                                      request.form.getlist("environment"))
    except PhaseError as exc:
        return members(status=status_of(exc), error=exc.message)
    return members(invite_link=absolute_link(url_for("console.use_link", token=token)))


@bp.route(PREFIX + "/members/<user_id>/invite-link", methods=["POST"])
@signed_in
def renew_invitation(user_id):
    """A new invitation link for a member who has not chosen a password (the old one ends)."""
    try:
        token = actions.renew_invitation(caller(), user_id)
    except PhaseError as exc:
        return members(status=status_of(exc), error=exc.message)
    return members(invite_link=absolute_link(url_for("console.use_link", token=token)))


@bp.route(PREFIX + "/members/<user_id>/role", methods=["POST"])
@signed_in
def member_role(user_id):
    actions.change_member_role(caller(), user_id, request.form.get("role_id"))
    return back("console.members", "role_changed")


@bp.route(PREFIX + "/members/<user_id>/access", methods=["POST"])
@signed_in
def member_access(user_id):
    actions.set_member_access(caller(), user_id, set(request.form.getlist("environment")))
    return back("console.members", "access_saved")


@bp.route(PREFIX + "/members/<user_id>/remove", methods=["POST"])
@signed_in
def remove_member(user_id):
    who = caller()
    return ask_then(f"Remove {actions.member(who, user_id)['email']}?", "Remove member",
                    url_for("console.members"),
                    "Their sessions, tokens and invitation link end at once.",
                    lambda: actions.remove_member(who, user_id),
                    "console.members", "member_removed")


# -- audit log -------------------------------------------------------------------------------


@bp.route(PREFIX + "/audit/")
@signed_in
def audit_log():
    who = caller()
    args = request.args
    filters = {
        "app_id": args.get("app") or None,
        "environment_id": args.get("environment") or None,
        "actor_id": args.get("actor") or None,
        "action": args.get("event") or None,
        "since": _day(args.get("since"), "since"),
        "until": _day(args.get("until"), "until", next_day=True),
    }
    page = whole_number(args.get("page"), "page", high=actions.AUDIT_PAGES) or 0
    events, more, names = actions.audit_events(who, filters, page)
    query = {name: value for name, value in args.items() if name != "page" and value}
    return render(
        "audit.html", events=events, names=names, page=page, filters=args,
        actor_name=lambda event: actions.actor_name(names, event),
        newer=url_for("console.audit_log", page=page - 1, **query) if page else None,
        older=url_for("console.audit_log", page=page + 1, **query) if more else None,
        apps=actions.visible_apps(who), choices=actions.granted_environment_choices(who),
        actions_seen=actions.audit_event_names(who),
    )


NOT_A_DAY = "'{name}' must be a day as YYYY-MM-DD, from 0001-01-01 to 9999-12-30."


def _day(text, name, next_day=False):
    """A YYYY-MM-DD filter as a stored timestamp (the next day's start for "until"); 400
    (InvalidRequest) for anything else, or a day whose next one is past the calendar."""
    if not text:
        return None
    try:
        moment = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        return format_time(moment + timedelta(days=1) if next_day else moment)
    except (ValueError, OverflowError):
        raise InvalidRequest(NOT_A_DAY.format(name=name)) from None


# -- the signed-in user's account ------------------------------------------------------------


@bp.route(PREFIX + "/account/")
@signed_in
def account(token=None, status=200, error=None):
    who = caller()
    return render("account.html", status, tokens=actions.personal_tokens(who),
                  sessions=sessions.live_sessions(services().db, who.principal.account_id),
                  current_session=who.session_id, expiries=TOKEN_EXPIRIES, token=token,
                  error=error)


@bp.route(PREFIX + "/account/password", methods=["POST"])
@signed_in
def change_password():
    """The current password is guessed no faster here than at sign-in: the same throttle
    counts each attempt against the user's email and the client address."""
    who = caller()
    wait = throttle().attempt(visitor_ip(), who.principal.display_name)
    if wait:
        return account(status=429, error=throttled_text(wait, "password"))
    try:
        sessions.change_password(services().db, who.principal, who.session_id,
                                 request.form.get("current_password", ""),
                                 request.form.get("new_password", ""),
                                 request.form.get("confirmation", ""), who.meta)
    except PhaseError as exc:
        return account(status=status_of(exc), error=exc.message)
    throttle().forgive(visitor_ip(), who.principal.display_name)
    return back("console.account", "password_changed")


@bp.route(PREFIX + "/account/tokens", methods=["POST"])
@signed_in
def new_personal_token():
    try:
        token = actions.issue_personal_token(caller(), request.form.get("name"),
                                             _expires_in(request.form.get("expires_in")))
    except PhaseError as exc:
        return account(status=status_of(exc), error=exc.message)
    return render("token_created.html", token=token, owner=g.signed_in.principal.display_name,
                  back_url=url_for("console.account"))


@bp.route(PREFIX + "/account/tokens/<token_id>/revoke", methods=["POST"])
@signed_in
def revoke_personal_token(token_id):
    who = caller()
    name = next((token["name"] for token in actions.personal_tokens(who)
                 if token["id"] == token_id), None)
    if name is None:
        raise DoesNotExist("Token not found.")
    return ask_then(f"Revoke your token {name}?", "Revoke token", url_for("console.account"),
                    "Anything using it loses access at once.",
                    lambda: actions.revoke_personal_token(who, token_id),
                    "console.account", "token_revoked")


@bp.route(PREFIX + "/account/sign-out-others", methods=["POST"])
@signed_in
def sign_out_others():
    return ask_then("Sign out your other sessions?", "Sign out everywhere else",
                    url_for("console.account"),
                    "Every other browser signed in as you must sign in again.",
                    lambda: {"ended": sessions.sign_out_others(services().db, g.signed_in,
                                                               caller().meta)},
                    "console.account", "signed_out_others")
