"""Path normalisation and folder chains, as Phase's utilities define them."""

import pytest

from phase_lite.paths import folder_chain, normalize_path, split_reference


@pytest.mark.parametrize("given, expected", [
    ("/", "/"),
    ("foo", "/foo"),
    ("/foo", "/foo"),
    ("/foo/", "/foo"),
    ("//foo//bar", "/foo/bar"),
    ("foo/bar/", "/foo/bar"),
    ("backend", "/backend"),
    ("/backend/", "/backend"),
    ("///a////b///", "/a/b"),
    ("/with space/ünï", "/with space/ünï"),
    # Phase would store an empty path here; phase_lite keeps such secrets at the root.
    ("", "/"),
    ("//", "/"),
    (None, "/"),
    (123, "/"),
    (["a"], "/"),
])
def test_normalize_path(given, expected):
    assert normalize_path(given) == expected


@pytest.mark.parametrize("composed, expected", [
    ("foo", ("/", "foo")),
    ("/foo", ("/", "foo")),
    ("path/to/key", ("/path/to", "key")),
    ("/path/to/key", ("/path/to", "key")),
    ("backend/API_KEY", ("/backend", "API_KEY")),
    ("a//b//KEY", ("/a/b", "KEY")),
])
def test_split_reference(composed, expected):
    assert split_reference(composed) == expected


@pytest.mark.parametrize("path, expected", [
    ("/", []),
    ("/a", [("/a", "a", "/")]),
    ("/a/b/c", [("/a", "a", "/"), ("/a/b", "b", "/a"), ("/a/b/c", "c", "/a/b")]),
])
def test_folder_chain(path, expected):
    assert folder_chain(path) == expected
