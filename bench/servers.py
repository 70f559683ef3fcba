"""Server processes for the bench: phase_lite and the baseline, each on a free loopback port.

Servers can be pinned to a CPU of their own (``pin_cpus``), away from the load generator: on a
small machine a threaded Python server whose threads hop between CPUs next to a busy load
generator loses most of its throughput to the handoffs, by an amount that changes from minute
to minute, and the baseline (many tiny requests) loses far more than phase_lite.

Peak memory is the kernel's high-water mark of the server process (``VmHWM`` in
``/proc/<pid>/status``); writing ``5`` to ``/proc/<pid>/clear_refs`` resets it (Linux >= 4.0)
so that each case reports its own peak.
"""

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "bench" / "baseline.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_environment(extra=None) -> dict:
    """The process environment without PHASE_LITE_* settings, so phase_lite runs on defaults.

    PHASE_LITE_THREADS is kept when set, and then applies to the baseline as well.
    """
    env = {name: value for name, value in os.environ.items()
           if not (name.startswith("PHASE_LITE_") and name != "PHASE_LITE_THREADS")
           and name != "RATE_LIMIT_DEFAULT"}
    env.update(extra or {})
    return env


class Server:
    """A child process serving HTTP on 127.0.0.1:<port>, with its output in a log file."""

    def __init__(self, name, argv, env, port, health_path, log_path, cpus=None, cwd=REPO):
        self.name = name
        self.cwd = cwd  # ``python -m`` imports from here first: the code that is served
        self.cpus = cpus
        self.argv = argv
        self.env = env
        self.port = port
        self.health_path = health_path
        self.log_path = Path(log_path)
        self.url = f"http://127.0.0.1:{port}"
        self.process = None
        self._log = None

    def start(self, timeout=120):
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        if self.cpus:
            # Set before the interpreter has started any thread, so every thread inherits it.
            os.sched_setaffinity(self.process.pid, self.cpus)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            try:
                status, _ = request(self.url, "GET", self.health_path, timeout=2)
                if status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {self.health_path} in {timeout}s")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        if self._log:
            self._log.close()
            self._log = None

    def log_tail(self, chars=2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def reset_peak_rss(self) -> bool:
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the process and all its threads so far."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float | None:
        return _status_field(self.process.pid, "VmHWM")

    def rss_mb(self) -> float | None:
        return _status_field(self.process.pid, "VmRSS")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def pin_cpus():
    """(server CPUs, load-generator CPUs) when the CPUs can be split, else (None, None)."""
    if not hasattr(os, "sched_setaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return {allowed[-1]}, set(allowed[:-1])


def phase_lite_server(data_dir, log_dir, cpus=None, settings=None, code=REPO) -> Server:
    """``python -m phase_lite.cli serve`` on its data directory, with default settings (plus
    ``settings``, such as a PHASE_LITE_DATABASE_URL), serving the ``phase_lite`` package found
    in ``code`` (this checkout by default)."""
    port = free_port()
    env = server_environment({**(settings or {}), "PHASE_LITE_DATA_DIR": str(data_dir),
                              "PHASE_LITE_LISTEN": f"127.0.0.1:{port}"})
    return Server("phase_lite", [sys.executable, "-m", "phase_lite.cli", "serve"], env, port,
                  "/health/", Path(log_dir) / f"phase_lite-{port}.log", cpus, cwd=code)


def baseline_server(threads, log_dir, cpus=None) -> Server:
    port = free_port()
    return Server("baseline", [sys.executable, str(BASELINE), f"127.0.0.1:{port}", str(threads)],
                  server_environment(), port, "/", Path(log_dir) / f"baseline-{port}.log", cpus)


def ceiling_server(threads, log_dir, body_path, cpus=None) -> Server:
    """The bare WSGI app on waitress answering the bytes of ``body_path`` (``baseline.py``)."""
    port = free_port()
    return Server("ceiling", [sys.executable, str(BASELINE), f"127.0.0.1:{port}", str(threads),
                              str(body_path)],
                  server_environment(), port, "/", Path(log_dir) / f"ceiling-{port}.log", cpus)


def request(base_url, method, path, headers=None, body=None, timeout=120, with_headers=False):
    """One HTTP request; return (status, body bytes), and the response headers after them
    with ``with_headers``."""
    host_port = base_url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        if with_headers:
            return response.status, response.read(), response.headers
        return response.status, response.read()
    finally:
        conn.close()


def _status_field(pid, field) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
