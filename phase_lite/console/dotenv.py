"""The ``.env`` format the console imports and exports (the Phase CLI's ``export`` form).

``KEY=value`` per line; ``#`` comments and blank lines skipped; an optional ``export``; a value
in double quotes may hold ``\\n``, ``\\"`` and ``\\\\`` escapes (multi-line values), in single
quotes it is taken as written, unquoted it ends at `` #``.
"""

import re

KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


class DotenvError(ValueError):
    """A line of the file cannot be read; the message names the line, never its value."""


def parse(text: str) -> list[tuple[str, str]]:
    """(KEY, value) pairs in file order; a repeated key keeps its last value."""
    found = {}
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export "):].lstrip()
        key, sep, raw = stripped.partition("=")
        key = key.strip()
        if not sep or not KEY_PATTERN.match(key):
            raise DotenvError(f"Line {number} is not KEY=value.")
        found.pop(key.upper(), None)
        found[key.upper()] = _value(raw.strip(), number)
    return list(found.items())


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
    them back exactly."""
    lines = []
    for secret, value in pairs:
        key = getattr(secret, "key", secret)
        escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                   .replace("\r", "\\r"))
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + ("\n" if lines else "")
