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
rather than one query per reference, and a ``Resolver`` per request resolves each referenced
secret once and bounds the request's work (``MAX_FOLLOWED``, ``MAX_SUBSTITUTED``).
"""

import re
from dataclasses import dataclass
from typing import Protocol

from .paths import split_reference

CROSS_APP_PATTERN = re.compile(r"\$\{(?!\{)([^{}]+?)::([^{}]+?)\.([^{}]+?)\}")
CROSS_ENV_PATTERN = re.compile(r"\$\{(?!\{)(?![^{}]*::)([^{}.]+?)\.([^{}]+?)\}")
LOCAL_PATTERN = re.compile(r"\$\{(?!\{)([^{}.]+?)\}")
REFERENCE_TOKEN = re.compile(r"\$\{(?!\{)[^{}]+?\}")  # any of the three, whole

MAX_DEPTH = 25
# A value that would grow past this while resolving keeps its remaining references verbatim:
# ``A=${B}${B}, B=${C}${C}, ...`` doubles at every level, and 25 levels would make gigabytes.
MAX_RESOLVED_LENGTH = 1 << 20
# The work one request may spend on references (beyond Phase, which has no bound): secrets
# resolved (a secret met again is resolved once, see ``Resolver``) and characters substituted.
# Past either, the remaining references of the request stay verbatim.
MAX_FOLLOWED = 10_000
MAX_SUBSTITUTED = 16 << 20


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
    return Resolver(source).resolve(value, env, identity)


@dataclass(frozen=True)
class _Resolved:
    """A referenced secret's resolved value and what its resolution depended on."""

    raw: str
    value: str
    height: int         # the longest chain of secrets followed, this one included
    reach: frozenset    # the identities followed, this one included
    exact: bool         # nothing was cut short by a cycle, the depth limit or the budget


class _Trace:
    """What the references of one value led to, gathered while it is resolved."""

    def __init__(self):
        self.height, self.reach, self.exact = 0, frozenset(), True

    def add(self, resolved: _Resolved):
        self.height = max(self.height, resolved.height)
        self.reach |= resolved.reach
        self.exact = self.exact and resolved.exact


class Resolver:
    """Reference resolution for one request, with its work bounded.

    Each referenced secret (environment, path, key) is resolved once and its value reused
    wherever it is referenced again: a fan-out of four secrets per level costs four
    resolutions per level, not four to the power of the depth. A value is reused only where
    resolving it again would give the same text: it was not cut short (cycle, depth, budget),
    none of the secrets it followed is on the current branch, and its chain still fits under
    ``MAX_DEPTH`` there. Everything else is resolved as before, within the request's budget.
    """

    def __init__(self, source: ReferenceSource):
        self.source = source
        self._known = {}
        self._followed = 0
        self._substituted = 0

    def resolve(self, value: str, env, identity) -> str:
        """``value`` (the raw value of the secret ``identity`` in ``env``), resolved."""
        if "${" not in value:
            return value
        known = self._known.get(identity)
        if known is not None and known.raw == value:
            return known.value  # resolved already, as a reference of another secret
        return self._resolve(value, env, frozenset((identity,)), _Trace())

    def _resolve(self, value, env, visited, trace):
        if "${" not in value:
            return value
        source = self.source
        # A reference repeated in one value is resolved once (dict.fromkeys keeps the order).
        for app_name, env_name, ref in dict.fromkeys(CROSS_APP_PATTERN.findall(value)):
            target = source.app_environment(env, app_name, env_name)
            value, stop = self._substitute(value, f"${{{app_name}::{env_name}.{ref}}}", target,
                                           ref, visited, trace)
            if stop:
                return value
        for env_name, ref in dict.fromkeys(CROSS_ENV_PATTERN.findall(value)):
            target = source.sibling_environment(env, env_name)
            value, stop = self._substitute(value, f"${{{env_name}.{ref}}}", target, ref,
                                           visited, trace)
            if stop:
                return value
        for ref in dict.fromkeys(LOCAL_PATTERN.findall(value)):
            found = self._follow(env, ref, visited, trace)
            if found is not None:
                value = self._replace(value, f"${{{ref}}}", found, trace)
        return value

    def _substitute(self, value, token, target, ref, visited, trace):
        """Replace a reference into another environment: (new value, whether to stop).

        A missing target leaves the reference verbatim; one the caller may not read stops
        resolution of the whole value where it stands, as on Phase.
        """
        if target is None:
            return value, False
        if not self.source.may_read(target):
            return value, True
        found = self._follow(target, ref, visited, trace)
        return (value if found is None else self._replace(value, token, found, trace)), False

    def _replace(self, value, token, found, trace):
        """Replace every ``token`` in ``value`` unless the result would be too long to serve
        or the request has substituted all it may."""
        length = len(value) + value.count(token) * (len(found) - len(token))
        if length > MAX_RESOLVED_LENGTH:
            return value
        if self._substituted + length > MAX_SUBSTITUTED:
            trace.exact = False
            return value
        self._substituted += length
        return value.replace(token, found)

    def _follow(self, env, ref, visited, trace):
        """The resolved value a reference points at, or None to leave it verbatim."""
        path, key_name = split_reference(ref)
        hit = self.source.find(env, path, key_name)
        if hit is None:
            return None
        identity, raw = hit
        if identity in visited or len(visited) >= MAX_DEPTH:
            trace.exact = False
            return None
        known = self._known.get(identity)
        if (known is None or not known.reach.isdisjoint(visited)
                or len(visited) + known.height > MAX_DEPTH):
            if self._followed >= MAX_FOLLOWED:
                trace.exact = False
                return None
            self._followed += 1
            inner = _Trace()
            value = self._resolve(raw, env, visited | {identity}, inner)
            known = _Resolved(raw, value, inner.height + 1, inner.reach | {identity}, inner.exact)
            if known.exact:
                self._known[identity] = known
        trace.add(known)
        return known.value
