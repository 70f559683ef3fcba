"""Conditional requests on ``/v1/secrets/`` (a phase_lite extension): entity tags,
``If-None-Match`` on reads and ``If-Match`` on writes. No Flask.

An entity tag names one answer of one environment at one version:
``"<environment version>-<environment mark>-<answer digest>"``, where the mark is the first 8
hex digits of SHA-256 of the environment id and the digest 16 hex digits of BLAKE2b of the
answer's body, keyed with the environment's (secret) salt, so that a tag seen by a proxy tells
nothing about a guessable value. The version moves with every write to the environment's
secrets; the digest with anything else the answer shows (a value referenced from another
environment, the caller's overrides, the access that reference resolution checks).

``If-Match`` on a write holds when one of its tags names this environment at its current
version: any GET of the environment at that version, whatever its filters, gives a tag a write
may be conditioned on; ``*`` always holds (the environment exists). Tags are compared strongly
(``W/`` tags never match, RFC 9110). ``If-None-Match`` compares weakly.
"""

import hashlib

from .errors import PreconditionFailed

CHANGED = ("The environment has changed since the ETag given in If-Match was issued; "
           "read it again and retry.")


def entity_tag(env_id: str, version: int, salt: str, body: bytes) -> str:
    """The ETag of an answer of an environment at ``version`` with this body; ``salt`` is the
    environment's (``vault.EnvironmentKeys.salt``)."""
    digest = hashlib.blake2b(body, digest_size=8, key=salt.encode()[:64]).hexdigest()
    return f'"{_environment_prefix(env_id, version)}{digest}"'


def none_match(header: str | None, tag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``tag`` (or is ``*``): the answer is then
    304 Not Modified."""
    if not header:
        return False
    tags = _tags(header)
    return "*" in tags or _opaque(tag) in {_opaque(t) for t in tags}


def expected_version(header: str | None, env_row) -> int | None:
    """The environment version an ``If-Match`` header requires (None: no condition), after
    checking it against ``env_row``; PreconditionFailed when no tag holds.

    The write checks the version again inside its transaction (``require_version``), so a
    write committed in between is caught.
    """
    if header is None:
        return None
    tags = _tags(header)
    if "*" in tags:
        return None
    current = _environment_prefix(env_row["id"], env_row["version"])
    if any(not tag.startswith("W/") and _opaque(tag).startswith(current) for tag in tags):
        return env_row["version"]
    raise PreconditionFailed(CHANGED)


def require_version(current: int, expected: int | None) -> None:
    """Refuse a write whose ``If-Match`` named an earlier version (call in its transaction)."""
    if expected is not None and current != expected:
        raise PreconditionFailed(CHANGED)


def _environment_prefix(env_id: str, version: int) -> str:
    mark = hashlib.sha256(env_id.encode()).hexdigest()[:8]
    return f"{version}-{mark}-"


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _opaque(tag: str) -> str:
    """The quoted-string of a tag, without ``W/`` and the quotes."""
    if tag.startswith("W/"):
        tag = tag[2:]
    return tag.strip('"')
