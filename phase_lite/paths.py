"""Secret paths as Phase normalises them, and the folders a path implies.

A leaf module (no imports from the package): plain strings in, plain strings out.
"""

ROOT = "/"


def normalize_path(path) -> str:
    """Return Phase's normal form of a path: one leading ``/``, no repeated or trailing ``/``.

    ``/`` stays ``/``; ``foo`` -> ``/foo``; ``//foo//bar/`` -> ``/foo/bar``. A missing or
    non-string path is the root. (Phase turns ``""`` and ``"//"`` into an empty path that no
    filter can reach; phase_lite puts them at the root.)
    """
    if not isinstance(path, str):
        return ROOT
    while "//" in path:
        path = path.replace("//", "/")
    if not path.startswith("/"):
        path = "/" + path
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return path


def split_reference(composed: str) -> tuple[str, str]:
    """Split ``path/to/KEY`` at its last ``/`` into (normalised path, key name)."""
    cut = composed.rfind("/")
    if cut == -1:
        return ROOT, composed
    return normalize_path(composed[:cut]), composed[cut + 1:]


def folder_chain(path: str) -> list[tuple[str, str, str]]:
    """The folders a normalised path needs, outermost first, as (folder path, name, parent path).

    ``/a/b`` -> ``[("/a", "a", "/"), ("/a/b", "b", "/a")]``; the root needs none.
    """
    chain, parent = [], ROOT
    for name in path.split("/"):
        if not name:
            continue
        here = f"{parent.rstrip('/')}/{name}"
        chain.append((here, name, parent))
        parent = here
    return chain
