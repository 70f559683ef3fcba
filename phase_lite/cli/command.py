"""What every ``phase-lite`` command shares: the root group, settings, output and errors.

Every command prints a one-line human result, or JSON with ``--json``, and exits non-zero with
a one-line message on bad input. Commands read the same ``PHASE_LITE_*`` settings as the server
and act as the local operator (``accounts.operator``), named in the audit events they cause.
"""

import json
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import click

from .. import __version__, accounts
from ..audit import CLI_META
from ..config import ConfigError, load_config, unknown_settings
from ..errors import PhaseError
from ..store import StoreError
from ..textfields import printable


class Context:
    """The settings, services and caller of one command, opened on first use."""

    meta = CLI_META

    def __init__(self):
        self._services = None
        self._operator = None

    @property
    def config(self):
        return load_config()

    @property
    def services(self):
        if self._services is None:
            from ..app import open_services

            self._services = open_services(self.config)
            # Closed when the command ends: the read log's waiting events written, the
            # database connections closed (a PostgreSQL server counts them).
            click.get_current_context().call_on_close(self._services.close)
        return self._services

    @property
    def db(self):
        return self.services.db

    @property
    def operator(self):
        if self._operator is None:
            self._operator = accounts.operator(self.services)
        return self._operator


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def emit(as_json, payload, line):
    # JSON escapes control characters itself; a text line may hold names stored by anyone.
    click.echo(json.dumps(payload, indent=2) if as_json else printable(line))


def emit_rows(as_json, payload, line, empty=""):
    """``emit`` a list: one text line per row (``line(row)``), or ``empty`` when it is empty."""
    emit(as_json, payload, "\n".join(map(line, payload)) or empty)


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(fn)


def command_name() -> str:
    """How to run ``phase-lite`` again as this process was run, for the hints it prints:
    ``phase-lite`` when that is what PATH finds, else the path it was run by (for example
    ``.venv/bin/phase-lite``), else ``python -m phase_lite.cli``."""
    invoked = sys.argv[0] if os.path.basename(sys.argv[0]) == "phase-lite" else None
    script = invoked or str(Path(sys.executable).parent / "phase-lite")
    found = shutil.which("phase-lite")
    try:
        if found and os.path.samefile(found, script):
            return "phase-lite"
    except OSError:
        pass
    if invoked:
        return shlex.quote(invoked)
    if os.access(script, os.X_OK):
        return shlex.quote(script)
    return f"{shlex.quote(sys.executable)} -m phase_lite.cli"


HINTED = re.compile(r"(?<=')phase-lite(?= )")


def runnable(text: str) -> str:
    """``text`` with each quoted ``'phase-lite ...'`` command written as it can be run here."""
    return HINTED.sub(lambda _: command_name(), text)


class PhaseLiteGroup(click.Group):
    """Turn domain and configuration errors into one line on stderr and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConfigError, PhaseError, StoreError) as exc:
            message = runnable(str(getattr(exc, "message", None) or exc))
            click.echo(printable(f"Error: {message}"), err=True)
            sys.exit(1)


@click.group(cls=PhaseLiteGroup)
@click.version_option(__version__, prog_name="phase-lite")
def main():
    """phase_lite: a small, self-hostable secrets manager that speaks Phase's API."""
    if click.get_current_context().invoked_subcommand != "serve":  # the server logs its own
        for line in unknown_settings():
            click.echo(printable(f"Warning: {line}"), err=True)
