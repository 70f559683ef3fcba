"""Signing the Phase CLI in through the console: ``phase auth`` in its default mode, "webauth".

The CLI (phase-cli's ``phase_cli/cmd/auth/auth.py``) listens on ``localhost:<port>``, makes an
ephemeral kx key pair and opens ``{PHASE_HOST}/webauth/<data>``, where ``data`` is the standard
padded base64 of ``<port>-<public key, 64 hex>-<token name>`` and the name is the CLI's
``user@hostname``. Once the signed-in user agrees, a personal access token of that name is
minted (``tokens.issue_user_token``, audited as every personal token) and the user's email and
the token string are each encrypted to the CLI's key as Phase's ``ph:v1`` strings
(``phase_crypto.encrypt_asymmetric``, as Phase's console does with ``encryptAsymmetric``). The
browser posts ``{"email": ..., "pss": ...}`` to ``http://localhost:<port>/``; the CLI decrypts
both with ``CryptoUtils.decrypt_asymmetric``. The token is readable by the CLI's key only: the
server keeps its hash, the browser carries ciphertext.

No Flask here: the console's page calls these.
"""

import base64
import binascii
import re
from dataclasses import dataclass

from . import contract, phase_crypto, tokens
from .errors import InvalidRequest
from .textfields import validate_text_field

DATA_MAX = 512  # characters of the link's data: a port, 64 hex and a name of 64 fit in 300
PORT_MIN, PORT_MAX = 1024, 65535  # the CLI picks one in 8000-20000; never a privileged one
_PUBLIC_KEY = re.compile(r"[0-9a-fA-F]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # a name is one line: no tab, no line break

NOT_A_LINK = ("This is not a Phase CLI sign-in link, or it was cut (a terminal may have wrapped "
              "it). Run phase auth again and open the link it prints, whole.")
BAD_PORT = (f"The link names a port the Phase CLI does not listen on (it must be a number from "
            f"{PORT_MIN} to {PORT_MAX}).")
BAD_KEY = "The link's public key is not 32 bytes of hex."
NO_NAME = "The link names no token."
NAME_TOO_LONG = f"The token name in the link is longer than {contract.NAME_MAX} characters."
NAME_CONTROL = "The token name in the link holds control characters."
NAME_MARKUP = "The token name in the link holds characters a token name cannot have."


@dataclass(frozen=True)
class CliRequest:
    """What a ``phase auth`` link asks for: where the CLI listens, its key, the token's name."""
    port: int
    public_key: str
    name: str

    @property
    def target(self) -> str:
        """Where the browser posts the answer (the only origin the page may reach)."""
        return f"http://localhost:{self.port}/"

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"


def parse_request(data: str) -> CliRequest:
    """Read a link's data; raise InvalidRequest, saying what is wrong, for anything else."""
    if not data or len(data) > DATA_MAX:
        raise InvalidRequest(NOT_A_LINK)
    try:
        text = base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        raise InvalidRequest(NOT_A_LINK) from None
    parts = text.split("-", 2)  # the name may hold dashes; the port and the key do not
    if len(parts) != 3:
        raise InvalidRequest(NOT_A_LINK)
    port_text, public_key, name = parts
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
            and PORT_MIN <= int(port_text) <= PORT_MAX):
        raise InvalidRequest(BAD_PORT)
    if _PUBLIC_KEY.fullmatch(public_key) is None:
        raise InvalidRequest(BAD_KEY)
    return CliRequest(int(port_text), public_key.lower(), _token_name(name))


def _token_name(name: str) -> str:
    """The name as it will be stored, or InvalidRequest: shown before Authorise, so never
    cleaned into another name silently."""
    if not name.strip():
        raise InvalidRequest(NO_NAME)
    if _CONTROL.search(name):
        raise InvalidRequest(NAME_CONTROL)
    if len(name) > contract.NAME_MAX:
        raise InvalidRequest(NAME_TOO_LONG)
    if validate_text_field(name, "name", contract.NAME_MAX) != name:
        raise InvalidRequest(NAME_MARKUP)
    return name


@dataclass(frozen=True)
class CliAnswer:
    """A minted token (its id, to revoke it if the CLI does not take it) and the body for the
    CLI: both fields ``ph:v1`` strings to the CLI's key."""
    token_id: str
    body: dict


def authorise(services, principal, user, cli: CliRequest, meta,
              expires_in: int | None = None) -> CliAnswer:
    """Mint ``user``'s personal access token named as the CLI asks and encrypt it, with the
    user's email, to the CLI's public key."""
    fields = {"name": cli.name}
    if expires_in:
        fields["expires_in"] = expires_in
    issued = tokens.issue_user_token(services, principal, user, fields, meta)
    body = {"email": phase_crypto.encrypt_asymmetric(user["email"], cli.public_key),
            "pss": phase_crypto.encrypt_asymmetric(issued.token, cli.public_key)}
    return CliAnswer(issued.id, body)
