"""Load generation: wrk when it is installed (or installable), a Python fallback otherwise.

Both run ``connections`` keep-alive connections for ``duration`` seconds and report requests,
req/s, p50/p99 latency and errors (socket errors, timeouts and answers outside 2xx).
"""

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass

WRK_SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wrk")
RESULT_MARK = "BENCH_RESULT "


@dataclass
class Load:
    """What to send: a constant request, or unique-key writers (``writers=True``)."""
    url: str
    headers: dict
    method: str = "GET"
    writers: bool = False
    prefix: str = "RUN"


@dataclass
class Result:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def find_wrk(log=print):
    """Return the wrk executable, installing the Debian package when missing; None if not."""
    if os.environ.get("BENCH_LOADGEN") == "python":
        return None
    if shutil.which("wrk"):
        return shutil.which("wrk")
    if shutil.which("apt-get") and os.geteuid() == 0:
        log("wrk is missing: installing the Debian package (apt-get install -y wrk)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for command in (["apt-get", "install", "-y", "-qq", "wrk"],
                        ["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "wrk"]):
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            if shutil.which("wrk"):
                return shutil.which("wrk")
    log("wrk is not available: using the Python load generator (figures are less precise)")
    return None


class LoadGenerator:
    def __init__(self, wrk, *, duration, connections, threads, timeout=30):
        self.wrk = wrk
        self.duration = duration
        self.connections = connections
        self.threads = threads
        self.timeout = timeout

    @property
    def name(self) -> str:
        if self.wrk:
            return f"wrk -t{self.threads} -c{self.connections} -d{self.duration}s"
        return f"Python load generator, {self.connections} connections, {self.duration}s"

    def run(self, load: Load, duration=None, connections=None) -> Result:
        duration = duration or self.duration
        connections = connections or self.connections
        if self.wrk:
            return self._run_wrk(load, duration, connections)
        return _run_python(load, duration, connections, self.timeout)

    def _run_wrk(self, load: Load, duration, connections) -> Result:
        script = "writers.lua" if load.writers else "get.lua"
        threads = min(self.threads, connections)
        command = [self.wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s",
                   f"--timeout={self.timeout}s", "-s", script]
        for name, value in load.headers.items():
            command += ["-H", f"{name}: {value}"]
        command.append(load.url)
        if load.writers:
            command += ["--", load.prefix]
        completed = subprocess.run(command, cwd=WRK_SCRIPTS, capture_output=True, text=True,
                                   check=False)
        for line in completed.stdout.splitlines():
            if line.startswith(RESULT_MARK):
                data = json.loads(line[len(RESULT_MARK):])
                break
        else:
            raise RuntimeError(f"wrk failed: {completed.stdout[-500:]} {completed.stderr[-500:]}")
        errors = (data["connect"] + data["read"] + data["write"] + data["timeout"]
                  + data["non2xx"])
        return Result(data["requests"], data["duration_us"] / 1e6, data["p50_us"] / 1000,
                      data["p99_us"] / 1000, errors)


def _run_python(load: Load, duration, connections, timeout) -> Result:
    """Keep-alive connections on threads; latencies measured around each request."""
    parts = urllib.parse.urlsplit(load.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    latencies, errors = [], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def worker(number):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        mine, failed, counter = [], 0, 0
        while time.monotonic() < deadline:
            counter += 1
            body = None
            if load.writers:
                key = f"WRITER_{load.prefix}_{number}_{counter}"
                body = json.dumps({"secrets": [{"key": key, "value": f"value-{counter}",
                                                "comment": "", "path": "/", "tags": []}]})
            started = time.perf_counter()
            try:
                conn.request(load.method, target, body=body, headers=load.headers)
                response = conn.getresponse()
                response.read()
                if not 200 <= response.status < 300:
                    failed += 1
            except (OSError, http.client.HTTPException):
                failed += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
                continue
            mine.append(time.perf_counter() - started)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    if not latencies:
        return Result(0, elapsed, 0.0, 0.0, errors[0])
    return Result(len(latencies), elapsed, _percentile(latencies, 50) * 1000,
                  _percentile(latencies, 99) * 1000, errors[0])


def _percentile(ordered, pct):
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]
