"""The constants of Phase's contract that more than one layer needs: the domain validates with
them, ``schemas`` documents them. One home, so documentation and behaviour cannot drift."""

import re

SECRET_TYPES = ("config", "sealed", "secret")
TAG_NAME_MAX = 64
NAME_MAX = 64            # apps, service accounts, tokens
DESCRIPTION_MAX = 10_000
ENV_NAME_REGEX = r"^[a-zA-Z0-9\-_]{1,64}$"
ENV_NAME_PATTERN = re.compile(ENV_NAME_REGEX)
ENV_NAME_INVALID = (
    "Environment name is invalid. Only letters, numbers, hyphens and underscores are allowed "
    "(max 64 characters)."
)
DEFAULT_TOKEN_NAME = "Default"
