"""Secret references (``${KEY}``, ``${ENV.KEY}``, ``${APP::ENV./path/KEY}``) resolved as Phase does.

Phase's rules, kept exactly: cross-app references are replaced first, then cross-environment,
then local ones, each by a literal replace of the whole ``${...}`` token; a referenced value is
itself resolved (recursively, in its own environment); a secret already on the current branch
or a branch 25 secrets deep is left unresolved (cycles terminate, ``A=${B}, B=${A}`` gives
``${A}``); a reference into an environment the caller may not read stops resolution of that
value where it stands; anything unresolvable, and ``${{...}}``, stays verbatim. The referenced
key name is matched through its keyDigest *as written* (stored keys are upper case, so
``${db_host}`` does not find ``DB_HOST``, as on Phase).

Lookups go through a ``ReferenceSource`` so one response is resolved from per-request maps
rather than one query per reference.
"""

import re
from typing import Protocol

from .paths import split_reference

CROSS_APP_PATTERN = re.compile(r"\$\{(?!\{)([^{}]+?)::([^{}]+?)\.([^{}]+?)\}")
CROSS_ENV_PATTERN = re.compile(r"\$\{(?!\{)(?![^{}]*::)([^{}.]+?)\.([^{}]+?)\}")
LOCAL_PATTERN = re.compile(r"\$\{(?!\{)([^{}.]+?)\}")

MAX_DEPTH = 25
# A value that would grow past this while resolving keeps its remaining references verbatim:
# ``A=${B}${B}, B=${C}${C}, ...`` doubles at every level, and 25 levels would make gigabytes.
MAX_RESOLVED_LENGTH = 1 << 20


class ReferenceSource(Protocol):
    """What resolution needs to know; ``env`` values are opaque environment handles."""

    def app_environment(self, env, app_name: str, env_name: str):
        """The environment ``env_name`` of the organisation's app ``app_name`` (names
        case-insensitive), or None when missing or ambiguous."""

    def sibling_environment(self, env, env_name: str):
        """The environment ``env_name`` (case-insensitive) of ``env``'s app, or None."""

    def may_read(self, env) -> bool:
        """Whether the caller may read secrets of ``env``."""

    def find(self, env, path: str, key_name: str):
        """``(identity, raw value)`` of the live secret at ``path`` whose keyDigest is that of
        ``key_name`` in ``env``, or None."""


def resolve(value: str, env, identity, source: ReferenceSource) -> str:
    """Return ``value`` (the raw value of the secret ``identity`` in ``env``) with its
    references resolved."""
    if "${" not in value:
        return value
    return _resolve(value, env, frozenset((identity,)), source)


def _resolve(value, env, visited, source):
    if "${" not in value:
        return value
    # A reference repeated in one value is resolved once (dict.fromkeys keeps the order).
    for app_name, env_name, ref in dict.fromkeys(CROSS_APP_PATTERN.findall(value)):
        target = source.app_environment(env, app_name, env_name)
        value, stop = _substitute(value, f"${{{app_name}::{env_name}.{ref}}}", target, ref,
                                  visited, source)
        if stop:
            return value
    for env_name, ref in dict.fromkeys(CROSS_ENV_PATTERN.findall(value)):
        target = source.sibling_environment(env, env_name)
        value, stop = _substitute(value, f"${{{env_name}.{ref}}}", target, ref, visited, source)
        if stop:
            return value
    for ref in dict.fromkeys(LOCAL_PATTERN.findall(value)):
        found = _follow(env, ref, visited, source)
        if found is not None:
            value = _replace(value, f"${{{ref}}}", found)
    return value


def _substitute(value, token, target, ref, visited, source):
    """Replace a reference into another environment: (new value, whether to stop resolving).

    A missing target leaves the reference verbatim; one the caller may not read stops
    resolution of the whole value where it stands, as on Phase.
    """
    if target is None:
        return value, False
    if not source.may_read(target):
        return value, True
    found = _follow(target, ref, visited, source)
    return (value if found is None else _replace(value, token, found)), False


def _replace(value, token, found):
    """Replace every ``token`` in ``value`` unless the result would be too long to serve."""
    if len(value) + value.count(token) * (len(found) - len(token)) > MAX_RESOLVED_LENGTH:
        return value
    return value.replace(token, found)


def _follow(env, ref, visited, source):
    """The resolved value a reference points at, or None to leave it verbatim."""
    path, key_name = split_reference(ref)
    hit = source.find(env, path, key_name)
    if hit is None:
        return None
    identity, raw = hit
    if identity in visited or len(visited) >= MAX_DEPTH:
        return None
    return _resolve(raw, env, visited | {identity}, source)
