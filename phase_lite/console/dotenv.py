"""The ``.env`` format the console imports, exports and edits, and the keys it accepts.

``KEY=value`` per line; ``#`` comments and blank lines skipped; an optional ``export``; a value
in double quotes may hold ``\\n``, ``\\"`` and ``\\\\`` escapes and may run over several lines
(a PEM key as it is), in single quotes it is taken as written (several lines too), unquoted it
ends at `` #``. ``render`` writes every value in double quotes, line breaks as they are, so
``parse(render(pairs)) == pairs``.

A key the console writes is an environment variable's name (``KEY_RULE``): letters, digits and
underscores, not starting with a digit, at most ``KEY_MAX`` characters; what the API accepts
beyond that (Phase's contract) the console shows and keeps, but does not create.
"""

import re

from ..errors import InvalidRequest

KEY_RULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_MAX = 256
KEY_REFUSED = ("A key is a name an environment variable can have: letters, digits and "
               f"underscores, not starting with a digit, at most {KEY_MAX} characters.")
# Keys made through the API that a .env line still holds unambiguously (listed in a bulk
# edit so that its unchanged text is accepted again)
_WRITABLE = re.compile(r"[^\s=#'\"\\]+")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


class DotenvError(ValueError):
    """A line of the file cannot be read; the message names the line, never its value."""


def valid_key(key: str) -> bool:
    return len(key) <= KEY_MAX and KEY_RULE.fullmatch(key) is not None


def check_key(key: str) -> str:
    """``key`` upper-cased, or InvalidRequest(KEY_REFUSED) when it is no variable's name."""
    key = (key or "").strip()
    if not valid_key(key):
        raise InvalidRequest(KEY_REFUSED)
    return key.upper()


def writable(key: str) -> bool:
    """Whether a stored key can be written as a .env line and read back as itself."""
    return valid_key(key) or _WRITABLE.fullmatch(key) is not None


def parse(text: str, known=frozenset()) -> list[tuple[str, str]]:
    """(KEY, value) pairs in file order, keys upper-cased. A key must be a valid one
    (``valid_key``) or one of ``known`` (the folder's own); a key given twice is refused."""
    found, first_line = {}, {}
    lines = text.replace("\r\n", "\n").split("\n")
    index = 0
    while index < len(lines):
        number, stripped = index + 1, lines[index].strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export "):].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DotenvError(f"Line {number} is not KEY=value.")
        if not (valid_key(key) or key.upper() in known):
            raise DotenvError(f"Line {number}: {KEY_REFUSED}")
        key = key.upper()
        if key in first_line:
            raise DotenvError(f"Line {number} repeats the key of line {first_line[key]}: "
                              "each key once.")
        raw = raw.strip()
        while _open_quote(raw) and index < len(lines):  # a quoted value over several lines
            raw += "\n" + lines[index]
            index += 1
        first_line[key] = number
        found[key] = _value(raw.strip(), number)
    return list(found.items())


def _open_quote(raw: str) -> bool:
    """Whether ``raw`` starts a quoted value that has not ended on this line."""
    if raw.startswith("'"):
        return raw.find("'", 1) == -1
    if raw.startswith('"'):
        index = 1
        while index < len(raw):
            if raw[index] == "\\":
                index += 2
                continue
            if raw[index] == '"':
                return False
            index += 1
        return True
    return False


def _value(raw: str, number: int) -> str:
    if raw.startswith('"'):
        out, index = [], 1
        while index < len(raw):
            char = raw[index]
            if char == "\\" and index + 1 < len(raw):
                out.append(_ESCAPES.get(raw[index + 1], "\\" + raw[index + 1]))
                index += 2
                continue
            if char == '"':
                return "".join(out)
            out.append(char)
            index += 1
        raise DotenvError(f"Line {number} has an unterminated quote.")
    if raw.startswith("'"):
        end = raw.find("'", 1)
        if end == -1:
            raise DotenvError(f"Line {number} has an unterminated quote.")
        return raw[1:end]
    cut = raw.find(" #")
    return (raw if cut == -1 else raw[:cut]).strip()


def render(pairs) -> str:
    """``KEY="value"`` lines (secret objects or keys, and values), escaped so ``parse`` reads
    them back exactly; a value's line breaks stay line breaks (a PEM key reads as itself)."""
    lines = []
    for secret, value in pairs:
        key = getattr(secret, "key", secret)
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r"))
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + ("\n" if lines else "")
