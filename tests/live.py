"""What the tests run outside their own process: ``phase-lite serve`` on a free loopback port,
the environment a child process needs for a test's data, the repository's root, Debian's
Chromium, and the data home every process the session starts uses (never the real one)."""

import os
import subprocess
import sys
import socket
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]

# The default data directory is ``$XDG_DATA_HOME/phase-lite`` (else ``~/.local/share``): a test
# or a command it starts that forgets PHASE_LITE_DATA_DIR lands in this session's own folder
# (``conftest`` points XDG_DATA_HOME at it), never in the home of the user running the tests.
TEST_XDG_DATA_HOME = Path(tempfile.mkdtemp(prefix="phase-lite-tests-xdg-"))


def database_env(config) -> dict:
    """The environment a child process (server, admin command) needs for ``config``'s data."""
    env = {"PHASE_LITE_DATA_DIR": str(config.data_dir)}
    if config.database_url:
        env["PHASE_LITE_DATABASE_URL"] = config.database_url
    return env


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``phase-lite serve`` in a child process on a free loopback port."""

    def __init__(self, data_dir, extra_env=None):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PHASE_LITE_DATA_DIR": str(data_dir),
                    "PHASE_LITE_LISTEN": f"127.0.0.1:{self.port}", **(extra_env or {})}
        self.process = None
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"

    def start(self, timeout=30):
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "phase_lite.cli", "serve"], env=self.env, cwd=REPO,
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/health/", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("server did not answer /health/ in time")

    def log_once(self, ready, timeout=10):
        """The server's log once ``ready(log)`` holds, or as it is after ``timeout`` seconds
        (the access log is written in batches: the caller asserts on what it got)."""
        deadline = time.monotonic() + timeout
        while True:
            log = self.log_path.read_text()
            if ready(log) or time.monotonic() > deadline:
                return log
            time.sleep(0.1)

    def stop(self, sig=None):
        if self.process and self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if getattr(self, "_log", None):
            self._log.close()


CHROMIUM = Path(os.environ.get("PHASE_LITE_TEST_CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    # Nothing but the page under test goes on the network.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--no-first-run", "--disable-domain-reliability",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
]
