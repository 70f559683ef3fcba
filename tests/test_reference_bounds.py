"""Reference bombs: each referenced secret is resolved once per request and the request's work is
bounded, with the same values as a straightforward resolution wherever that one is feasible."""

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phase_lite import references
from phase_lite.paths import split_reference
from phase_lite.references import CROSS_ENV_PATTERN, LOCAL_PATTERN


class Environments:
    """A ReferenceSource over {env name: {KEY: value}} of one app, every environment readable
    except those named in ``unreadable``."""

    def __init__(self, envs, unreadable=()):
        self.envs, self.unreadable = envs, set(unreadable)

    def app_environment(self, env, app_name, env_name):
        return None

    def sibling_environment(self, env, env_name):
        return env_name if env_name in self.envs else None

    def may_read(self, env):
        return env not in self.unreadable

    def find(self, env, path, key_name):
        value = self.envs[env].get(key_name) if path == "/" else None
        return None if value is None else ((env, key_name), value)


def straightforward(value, env, visited, source):
    """Phase's resolution as written: every reference followed again wherever it appears."""
    for env_name, ref in dict.fromkeys(CROSS_ENV_PATTERN.findall(value)):
        target = source.sibling_environment(env, env_name)
        if target is None:
            continue
        if not source.may_read(target):
            return value
        found = follow(target, ref, visited, source)
        if found is not None:
            value = replace(value, f"${{{env_name}.{ref}}}", found)
    for ref in dict.fromkeys(LOCAL_PATTERN.findall(value)):
        found = follow(env, ref, visited, source)
        if found is not None:
            value = replace(value, f"${{{ref}}}", found)
    return value


def replace(value, token, found):
    """Every ``token`` replaced, unless the value would grow past the length a value may have."""
    replaced = value.replace(token, found)
    return value if len(replaced) > references.MAX_RESOLVED_LENGTH else replaced


def follow(env, ref, visited, source):
    hit = source.find(env, *split_reference(ref))
    if hit is None or hit[0] in visited or len(visited) >= references.MAX_DEPTH:
        return None
    return straightforward(hit[1], env, visited | {hit[0]}, source)


KEYS = ["A", "B", "C", "D", "E"]
REFERENCE = st.sampled_from(
    [f"${{{key}}}" for key in KEYS] + [f"${{{env}.{key}}}" for env in ("dev", "prod")
                                       for key in KEYS] + ["${MISSING}", "x", "-"])
VALUE = st.lists(REFERENCE, max_size=4).map("".join)
ENVIRONMENT = st.dictionaries(st.sampled_from(KEYS), VALUE, max_size=5)


SMALL_DEPTH = 6  # the straightforward resolution is exponential: keep it feasible
SMALL_LENGTH = 2000  # and the length limit reached often


@settings(max_examples=300, deadline=None, database=None)
@given(dev=ENVIRONMENT, prod=ENVIRONMENT, prod_readable=st.booleans())
def test_one_resolver_per_request_gives_the_straightforward_values(dev, prod, prod_readable):
    """Cycles, diamonds, the depth and length limits, unreadable environments and references
    left verbatim included (limits made small, so that the reference is quick to compute; the
    request budget, which the straightforward resolution lacks, lifted)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(references, "MAX_DEPTH", SMALL_DEPTH)
        patch.setattr(references, "MAX_RESOLVED_LENGTH", SMALL_LENGTH)
        patch.setattr(references, "MAX_FOLLOWED", 10**9)
        patch.setattr(references, "MAX_SUBSTITUTED", 10**12)
        check_against_straightforward(dev, prod, prod_readable)


def check_against_straightforward(dev, prod, prod_readable):
    source = Environments({"dev": dev, "prod": prod},
                          unreadable=() if prod_readable else ("prod",))
    resolver = references.Resolver(source)  # shared by every secret, as in one response
    for env, secrets in (("dev", dev), ("prod", prod)):
        for key, value in secrets.items():
            expected = straightforward(value, env, frozenset({(env, key)}), source)
            assert resolver.resolve(value, env, (env, key)) == expected


def fan_out(levels, width=4, leaf="v"):
    """``B_<level>_<i>`` referencing every secret of the next level; the last level is ``leaf``."""
    secrets = {}
    for level in range(levels):
        refs = "".join(f"${{B_{level + 1}_{j}}}" for j in range(width))
        secrets.update({f"B_{level}_{i}": refs for i in range(width)})
    secrets.update({f"B_{levels}_{i}": leaf for i in range(width)})
    return secrets


def test_a_small_fan_out_has_the_straightforward_value():
    source = Environments({"dev": fan_out(3)})
    expected = straightforward("${B_0_0}", "dev", frozenset(), source)
    assert expected == "v" * 4 ** 3
    assert references.resolve("${B_0_0}", "dev", ("dev", "TOP"), source) == expected


def test_a_cyclic_bomb_is_cut_by_the_request_budget():
    """Every leaf refers back to the top: nothing can be reused, the budget stops it."""
    secrets = fan_out(16, leaf="${B_0_0}")
    source = Environments({"dev": secrets})
    started = time.monotonic()
    resolver = references.Resolver(source)
    values = [resolver.resolve(value, "dev", ("dev", key)) for key, value in secrets.items()]
    assert time.monotonic() - started < 2
    assert all("${B_" in value for value in values)


def post_secrets(client, headers, query, secrets):
    response = client.post("/v1/secrets/" + query, headers=headers, data=json.dumps(
        {"secrets": [{"key": key, "value": value} for key, value in secrets.items()]}))
    assert response.status_code == 200, response.json


def test_a_16_level_fan_out_of_4_answers_in_milliseconds(client, demo, sa_headers):
    """The attack: 68 small secrets whose top value would take hours to resolve naively."""
    query = f"?app_id={demo[0]['id']}&env=Development"
    post_secrets(client, sa_headers, query, fan_out(16))
    started = time.monotonic()
    response = client.get("/v1/secrets/" + query, headers=sa_headers)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 0.5, elapsed
    values = {item["key"]: item["value"] for item in response.json}
    assert values["B_12_3"] == "v" * 4 ** 4  # below the length bound: fully resolved
    assert len(values["B_0_0"]) <= references.MAX_RESOLVED_LENGTH


def test_a_small_fan_out_over_http_matches_the_straightforward_values(client, demo,
                                                                      sa_headers):
    query = f"?app_id={demo[0]['id']}&env=Development"
    secrets = fan_out(4, width=3, leaf="${B_1_0}x")  # a cycle through level 1 as well
    post_secrets(client, sa_headers, query, secrets)
    source = Environments({"dev": secrets})
    expected = {key: straightforward(value, "dev", frozenset({("dev", key)}), source)
                for key, value in secrets.items()}
    response = client.get("/v1/secrets/" + query, headers=sa_headers)
    assert {item["key"]: item["value"] for item in response.json} == expected
