"""A throwaway PostgreSQL server for the tests and benchmarks, started from the system's binaries.

Debian's packages put them in ``/usr/lib/postgresql/<major>/bin`` (``make test`` installs the
``postgresql`` package when none is there). PostgreSQL refuses to run as root, so as root the
cluster belongs to the ``postgres`` user. It listens on a Unix socket in its own temporary
directory only (no TCP port to collide with), with durability off unless ``durable`` (the
tests throw it away; the bench measures PostgreSQL's defaults).
"""

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def find_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda path: int(Path(path).parent.parent.name))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self, bin_dir: Path | None = None, durable: bool = False):
        self.durable = durable
        self.bin_dir = bin_dir or find_binaries()
        if self.bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="phase_lite-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_owner = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args):
        subprocess.run([*self._as_owner, *args], check=True, capture_output=True, cwd=self.root)

    def start(self) -> "PostgresServer":
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--locale=C.UTF-8", "--encoding=UTF8", "--no-sync")
        options = [f"-k {self.root}", "-c listen_addresses=", "-c max_connections=200"]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                  str(self.log), "-o", " ".join(options), "start")
        return self

    def url(self, database="postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.root}"

    def create_database(self, name: str) -> str:
        """Create an empty database; return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self):
        if self.data.exists():
            subprocess.run([*self._as_owner, str(self.bin_dir / "pg_ctl"), "-D",
                            str(self.data), "-m", "immediate", "stop"],
                           capture_output=True, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)
