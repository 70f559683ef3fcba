"""Request bodies and arguments of the secrets endpoints, checked with Phase's messages."""

import json
import re

from .. import contract
from ..errors import InvalidRequest
from ..paths import normalize_path
from .model import NewSecret, Override, SecretChange

LEASE_TTL_INVALID = "lease_ttl must be a valid integer (seconds)"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


# -- request bodies, checked with Phase's messages -------------------------------------------


def parse_body(raw: bytes) -> dict:
    """Decode a request body as Phase's secrets view does, whatever the Content-Type."""
    if not raw:
        raise InvalidRequest("Request body is required.")
    try:
        body = json.loads(raw)
        if _SURROGATE_ESCAPE.search(raw):
            # A lone surrogate escape decodes but can never be stored as UTF-8 text.
            json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        raise InvalidRequest("Request body must be valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    return body


def parse_new_secrets(body: dict) -> list[NewSecret]:
    """The entries of a POST body; every entry is checked before anything is written."""
    entries = _entry_list(body)
    parsed = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidRequest("Each entry in 'secrets' must be an object.")
        key, value = entry.get("key"), entry.get("value")
        if not isinstance(key, str) or not key.strip():
            raise InvalidRequest("Each secret requires a non-empty 'key'.")
        if not isinstance(value, str):
            raise InvalidRequest("Each secret requires a 'value' string.")
        secret_type = _checked_type(entry.get("type"))
        override = _checked_override(entry["override"]) if "override" in entry else None
        parsed.append(NewSecret(
            key=key.upper(),
            value=value,
            comment=_checked_comment(entry.get("comment")),
            path=normalize_path(entry.get("path")),
            tags=_tag_input(entry["tags"]) if "tags" in entry else None,
            type=secret_type or "secret",
            override=override,
        ))
    return parsed


def parse_secret_changes(body: dict) -> list[SecretChange]:
    """The entries of a PUT body (partial updates addressed by ``id``)."""
    entries = _entry_list(body)
    parsed = []
    for entry in entries:
        if not isinstance(entry, dict) or "id" not in entry:
            raise InvalidRequest("Secret ID not provided")
        secret_type = _checked_type(entry.get("type"))
        override = _checked_override(entry["override"]) if "override" in entry else None
        key = entry.get("key")
        if key is not None and not isinstance(key, str):
            raise InvalidRequest("Each secret requires a non-empty 'key'.")
        value = entry.get("value")
        if value is not None and not isinstance(value, str):
            raise InvalidRequest("Each secret requires a 'value' string.")
        path = entry.get("path")
        parsed.append(SecretChange(
            id=str(entry["id"]),
            key=None if key is None else key.upper(),
            value=value,
            comment=_checked_comment(entry["comment"]) if "comment" in entry else None,
            # Phase ignores a path it cannot normalise (the secret stays where it is).
            path=normalize_path(path) if isinstance(path, str) else None,
            tags=_tag_input(entry["tags"]) if "tags" in entry else None,
            type=secret_type,
            override=override,
        ))
    return parsed


def parse_secret_ids(body: dict) -> list[str]:
    """The ids of a DELETE body."""
    ids = body.get("secrets") or []
    if not isinstance(ids, list) or not ids:
        raise InvalidRequest("'secrets' must be a non-empty list of secret IDs.")
    return [str(secret_id) for secret_id in ids]


def check_dynamic_arguments(args: dict) -> None:
    """Validate the dynamic-secret parameters of a GET (no dynamic secret is ever returned)."""
    wants_dynamic = any(
        name in args and args[name].lower() != "false" for name in ("dynamic", "include_dynamic")
    )
    lease_ttl = args.get("lease_ttl")
    if wants_dynamic and lease_ttl:
        try:
            int(lease_ttl)
        except ValueError:
            raise InvalidRequest(LEASE_TTL_INVALID) from None


def _entry_list(body):
    entries = body.get("secrets")
    if not isinstance(entries, list) or not entries:
        raise InvalidRequest("'secrets' must be a non-empty list.")
    return entries


def _checked_type(secret_type):
    if secret_type is None:
        return None
    if not isinstance(secret_type, str) or secret_type not in contract.SECRET_TYPES:
        raise InvalidRequest(
            f"Invalid 'type': {secret_type!r}. Must be one of {sorted(contract.SECRET_TYPES)}."
        )
    return secret_type


def _checked_override(override) -> Override:
    if not isinstance(override, dict):
        raise InvalidRequest("'override' must be a JSON object.")
    if not isinstance(override.get("value"), str):
        raise InvalidRequest("'override.value' must be a string.")
    if not isinstance(override.get("isActive"), bool):
        raise InvalidRequest("'override.isActive' must be a boolean.")
    return Override(value=override["value"], is_active=override["isActive"])


def _checked_comment(comment):
    if comment is None:
        return ""
    if not isinstance(comment, str):
        raise InvalidRequest("'comment' must be a string.")
    return comment


def _tag_input(tags) -> tuple:
    # Phase iterates whatever it is given (a string gives its characters); null means none.
    if isinstance(tags, (list, str, dict)):
        return tuple(tags)
    return ()


def tag_names(tags) -> tuple:
    """Phase's tag clean-up: non-strings skipped, names trimmed, blanks dropped, duplicates
    once; a name over 64 characters is refused."""
    names = []
    for raw in tags or ():
        if not isinstance(raw, str):
            continue
        name = raw.strip()
        if not name:
            continue
        if len(name) > contract.TAG_NAME_MAX:
            raise InvalidRequest(
                f"Tag name exceeds {contract.TAG_NAME_MAX} characters: {name[:32]!r}\u2026"
            )
        if name not in names:
            names.append(name)
    return tuple(names)
