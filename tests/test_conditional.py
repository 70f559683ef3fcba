"""Entity tags and the If-None-Match / If-Match rules of phase_lite/conditional.py."""

import pytest

from phase_lite.conditional import (CHANGED, entity_tag, expected_version, none_match,
                                    require_version)
from phase_lite.errors import PreconditionFailed

ENV = {"id": "3f1c4a52-8a51-4d0b-9b7e-2c2d0c5e9a10", "version": 7}
OTHER_ENV = {"id": "b0a8a1f0-0d77-4c55-8d55-5c3a4c1b2e33", "version": 7}
SALT = "ab" * 32


def tag_of(env, salt, body):
    return entity_tag(env["id"], env["version"], salt, body)


def test_a_tag_changes_with_the_body_the_version_the_environment_and_the_salt():
    tag = tag_of(ENV, SALT, b"[]")
    assert tag.startswith('"7-') and tag.endswith('"') and len(tag) == 29
    assert tag == tag_of(dict(ENV), SALT, b"[]")
    others = {tag_of(ENV, SALT, b"[1]"), tag_of(dict(ENV, version=8), SALT, b"[]"),
              tag_of(OTHER_ENV, SALT, b"[]"), tag_of(ENV, "cd" * 32, b"[]")}
    assert tag not in others and len(others) == 4


@pytest.mark.parametrize("header, matches", [
    (None, False), ("", False), ("*", True), ("{tag}", True), ("W/{tag}", True),
    ('"other", {tag}', True), ('"other"', False), ("{tag}x", False),
])
def test_if_none_match(header, matches):
    tag = tag_of(ENV, SALT, b"[]")
    assert none_match(header and header.format(tag=tag), tag) is matches


def test_if_match_any_answer_of_the_environment_at_its_version():
    filtered = tag_of(ENV, SALT, b'[{"key": "A"}]')
    assert expected_version(None, ENV) is None
    assert expected_version("*", ENV) is None
    assert expected_version(filtered, ENV) == 7
    assert expected_version(f'"nope", {filtered}', ENV) == 7


@pytest.mark.parametrize("header", [
    lambda: tag_of(dict(ENV, version=6), SALT, b"[]"),   # an earlier version
    lambda: tag_of(OTHER_ENV, SALT, b"[]"),              # another environment
    lambda: "W/" + tag_of(ENV, SALT, b"[]"),             # weak tags never match
    lambda: '"garbage"',
    lambda: "",
])
def test_if_match_refused(header):
    with pytest.raises(PreconditionFailed) as refused:
        expected_version(header(), ENV)
    assert refused.value.message == CHANGED


def test_the_write_checks_again_in_its_transaction():
    require_version(7, None)
    require_version(7, 7)
    with pytest.raises(PreconditionFailed):
        require_version(8, 7)
