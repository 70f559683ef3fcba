"""Text typed by people (names, descriptions), cleaned on the way in and made safe on the way out.

``validate_text_field`` is Phase's (``backend/api/utils/rest.py``): HTML tags removed, then C0/C1
control characters other than tab, LF and CR, then surrounding whitespace; an empty result is a
missing field, and the length limit counts the cleaned text. ``printable`` is for terminals:
stored text written before cleaning, or by an older version, must not move the cursor, ring the
bell or recolour the screen of whoever lists it.
"""

import re
from html.parser import HTMLParser

from .errors import InvalidRequest

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
UNPRINTABLE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # all but the line break


def validate_text_field(value, field, max_length, *, required=True):
    """Return ``value`` cleaned as Phase cleans it, or None for an absent/blank optional value.

    Raise InvalidRequest with Phase's texts: ``Missing required field: <field>`` when nothing is
    left, ``'<field>' cannot exceed <n> characters.`` when the cleaned text is too long.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidRequest(f"Missing required field: {field}")
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"'{field}' must be a string.")
    cleaned = CONTROL_CHARACTERS.sub("", strip_tags(value)).strip()
    if not cleaned:
        if required:
            raise InvalidRequest(f"Missing required field: {field}")
        return None
    if len(cleaned) > max_length:
        raise InvalidRequest(f"'{field}' cannot exceed {max_length} characters.")
    return cleaned


def printable(text: str) -> str:
    """``text`` for a terminal: every control character but the line break shown escaped."""
    return UNPRINTABLE.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class _TagStripper(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=False)
        self.parts = []

    def handle_data(self, data):
        self.parts.append(data)

    def handle_entityref(self, name):
        self.parts.append(f"&{name};")

    def handle_charref(self, name):
        self.parts.append(f"&#{name};")


def strip_tags(value: str) -> str:
    """Remove HTML tags as Django's ``strip_tags`` does (repeated until no tag is left)."""
    while "<" in value and ">" in value:
        stripper = _TagStripper()
        stripper.feed(value)
        stripper.close()
        stripped = "".join(stripper.parts)
        if stripped.count("<") == value.count("<"):
            break
        value = stripped
    return value
