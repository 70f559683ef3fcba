"""``make bench``: phase_lite against a bare Flask + waitress baseline, in one table.

Starts ``phase-lite serve`` (default settings, its own temporary data directory initialised
with ``phase-lite init --json``), the baseline app ("hello") and the ceiling (a bare WSGI app
answering phase_lite's own GET 100 body) with the same thread count, each on a free loopback
port; fills the measured environments over HTTP; loads them with wrk (a Python load generator
when wrk cannot be had) and prints a markdown table of req/s, p50, p99, the ratios to hello and
to the ceiling and the server's peak RSS per case, then PASS/FAIL per target. The table is also
written to ``bench/results/latest.md``. Exit status 1 when a target fails.

The PostgreSQL cases (GET 100 and POST 1,000 again, with PHASE_LITE_DATABASE_URL) run against
a PostgreSQL server the bench starts from the system's binaries (``tests/postgres_server.py``)
with its durable defaults (fsync, synchronous commit), as SQLite runs with ``synchronous=FULL``.
BENCH_POSTGRES=0 skips them.

Each GET case is a warm-up, then BENCH_ROUNDS (3) rounds of a baseline run, a case run and a
ceiling run of BENCH_DURATION (3) seconds each; the best run of each side is kept (other
processes only ever slow a run down) and ratios divide by the best baseline (and ceiling)
figure of the run. Other settings
(environment variables): BENCH_WARMUP (seconds, 1), BENCH_CONNECTIONS (8), BENCH_WRK_THREADS (2),
BENCH_POSTS (POSTs of 1,000 secrets, 5), BENCH_LARGE (0 skips the 1,000,000-secret case),
BENCH_LARGE_SECRETS (1000000), BENCH_LOADGEN (``python`` forces the fallback load generator),
BENCH_PIN (1: servers on the last CPU, the load generator on the others; 0: no pinning),
PHASE_LITE_THREADS (both servers).
"""

import contextlib
import os
import platform
import secrets as random_tokens
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson
from phase_lite.config import load_config

import console
import lockbox
import seed
from load import Load, LoadGenerator, find_wrk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # postgres_server
from servers import (baseline_server, ceiling_server, phase_lite_server, pin_cpus, request,
                     server_environment)

REPO = Path(__file__).resolve().parents[1]
REST = "/service/public/v1/secrets/"
CLIENT = "/service/secrets/"
KEY = seed.key_name(31)  # DB_PASSWORD
MISSING = "n/a (endpoint missing)"
MAIN_ENVIRONMENTS = ("Development", "Staging", "Large", "Writers")
PG_GET100 = "PostgreSQL: GET 100 secrets (5 with references)"
PG_POST1000 = "PostgreSQL: POST 1,000 secrets in one request"
NOT_MODIFIED = "GET 100 secrets with If-None-Match: 304"


@dataclass
class Settings:
    duration: int = 3
    rounds: int = 3
    warmup: int = 1
    connections: int = 8
    wrk_threads: int = 2
    posts: int = 5
    large: bool = True
    large_secrets: int = 1_000_000
    pin: bool = True
    postgres: bool = True

    @classmethod
    def from_env(cls, env=os.environ):
        def number(name, default):
            return int(env.get(name) or default)

        return cls(
            duration=number("BENCH_DURATION", cls.duration),
            rounds=max(1, number("BENCH_ROUNDS", cls.rounds)),
            warmup=number("BENCH_WARMUP", cls.warmup),
            connections=number("BENCH_CONNECTIONS", cls.connections),
            wrk_threads=number("BENCH_WRK_THREADS", cls.wrk_threads),
            posts=number("BENCH_POSTS", cls.posts),
            large=(env.get("BENCH_LARGE") or "1") not in ("0", "false", "no", "off"),
            large_secrets=number("BENCH_LARGE_SECRETS", cls.large_secrets),
            pin=(env.get("BENCH_PIN") or "1") not in ("0", "false", "no", "off"),
            postgres=(env.get("BENCH_POSTGRES") or "1") not in ("0", "false", "no", "off"),
        )


@dataclass
class Row:
    """One line of the table; ``missing`` (a reason) replaces the figures."""
    name: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    rss_mb: float | None = None
    errors: int = 0
    requests: int = 0
    notes: list = field(default_factory=list)
    missing: str | None = None
    ratio_shown: bool = True
    companion_rps: float | None = None  # the reference case measured in the same rounds
    paired_rps: float | None = None  # the best baseline run of this case's own rounds
    cpu_us: float | None = None  # the server's median CPU time per request over the runs
    def ratio(self, baseline_row) -> float | None:
        if not (self.measured and baseline_row and baseline_row.measured):
            return None
        return self.rps / baseline_row.rps

    @property
    def measured(self) -> bool:
        return self.missing is None and self.rps is not None


def log(message):
    print(message, file=sys.stderr, flush=True)


# -- the run ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, settings: Settings, generator: LoadGenerator, workdir: Path,
                 server_cpus=None):
        self.settings = settings
        self.server_cpus = server_cpus
        self.generator = generator
        self.workdir = workdir
        self.rows = {}
        self.baselines = []
        self.ceilings = []  # best ceiling run next to each case
        self.yardstick_cpu = {"baseline": [], "ceiling": []}  # CPU per request of each run
        self.ceiling = None  # the ceiling server, once phase_lite's GET 100 body is known
        self.single_connection_rps = None
        self.facts = []  # lines printed under the table (seeding times, ...)

    def run(self):
        threads = load_config(server_environment()).threads
        self.facts.append(f"Server threads (PHASE_LITE_THREADS) for both: {threads}")
        with baseline_server(threads, self.workdir, self.server_cpus) as baseline, \
                contextlib.ExitStack() as ceiling:
            self.baseline = baseline
            self.start_ceiling = lambda body: self._start_ceiling(ceiling, threads, body)
            self.probe_single_connection()
            self.run_main()
            if self.settings.postgres:
                self.guarded("pg_get100", PG_GET100, self.run_postgres)
            if self.settings.large:
                self.guarded("large", "GET 100 secrets, 1,000,000 in other environments",
                             self.run_large)
            else:
                self.rows["large"] = Row("GET 100 secrets, 1,000,000 in other environments",
                                         missing="skipped (BENCH_LARGE=0)")
        self.guarded("console", CONSOLE_CASE, self.case_console)
        self.guarded("lockbox", LOCKBOX_CASE, self.case_lockbox)

    def _start_ceiling(self, stack, threads, body: bytes):
        path = self.workdir / "ceiling-body.json"
        path.write_bytes(body)
        self.ceiling = stack.enter_context(
            ceiling_server(threads, self.workdir, path, self.server_cpus))
        log(f"ceiling on {self.ceiling.url} ({fmt_bytes(len(body))})")

    def guarded(self, slot, name, step, *args):
        """Run one case; an exception makes its row say so instead of stopping the bench."""
        try:
            step(*args)
        except Exception as exc:  # the table must still come out
            log(traceback.format_exc())
            self.rows[slot] = Row(name, missing=f"n/a (error: {exc.__class__.__name__}: "
                                                 f"{str(exc)[:80]})")

    # -- phase_lite on an otherwise empty database ---------------------------------------

    def run_main(self):
        data_dir = self.workdir / "main"
        seed.init_data_dir(data_dir)
        envs = (*MAIN_ENVIRONMENTS, *(f"Import{n}" for n in range(self.settings.posts)))
        layout = seed.create_bench_app(data_dir, envs)
        with phase_lite_server(data_dir, self.workdir, self.server_cpus) as server:
            log(f"phase_lite on {server.url}, baseline on {self.baseline.url}")
            ready = self.seed_measured(server, layout)
            if ready is True:
                status, body = request(server.url, "GET", rest_path(layout, "Development"),
                                       rest_headers(layout))
                if status == 200:
                    self.start_ceiling(body)
            if ready is not True:
                for slot, name in (("key", "GET one secret by key (environment of 100)"),
                                   ("get100", "GET 100 secrets (5 with references)"),
                                   ("notmodified", NOT_MODIFIED),
                                   ("get10k", "GET 10,000 secrets"),
                                   ("cli100", "CLI path: GET 100 secrets (`phase secrets export`)"),
                                   ("post1000", "POST 1,000 secrets in one request"),
                                   ("writers", "8 concurrent writers, one secret per POST")):
                    self.rows[slot] = Row(name, missing=ready)
                self.run_client_only(server, layout)
                self.measure_baseline_only()
                return
            self.guarded("key", "GET one secret by key (environment of 100)",
                         self.case_key, server, layout)
            self.guarded("get100", "GET 100 secrets (5 with references)",
                         self.case_get100, server, layout)
            self.guarded("notmodified", NOT_MODIFIED, self.case_not_modified, server, layout)
            self.guarded("cli100", "CLI path: GET 100 secrets (`phase secrets export`)",
                         self.case_cli100, server, layout)
            self.guarded("get10k", "GET 10,000 secrets", self.case_get10k, server, layout)
            self.guarded("post1000", "POST 1,000 secrets in one request",
                         self.case_post1000, server, layout)
            self.guarded("writers", "8 concurrent writers, one secret per POST",
                         self.case_writers, server, layout)

    # -- the same cases on PostgreSQL ----------------------------------------------------------

    def run_postgres(self):
        from postgres_server import PostgresServer

        postgres = PostgresServer(durable=True).start()
        try:
            settings = {"PHASE_LITE_DATABASE_URL": postgres.create_database("bench")}
            data_dir = self.workdir / "postgres"
            seed.init_data_dir(data_dir, settings)
            envs = (*MAIN_ENVIRONMENTS, *(f"Import{n}" for n in range(self.settings.posts)))
            layout = seed.create_bench_app(data_dir, envs, settings)
            with phase_lite_server(data_dir, self.workdir, self.server_cpus, settings) as server:
                log(f"phase_lite on PostgreSQL on {server.url}")
                ready = self.seed_measured(server, layout)
                if ready is not True:
                    raise RuntimeError(ready)
                self.guarded("pg_get100", PG_GET100, self.case_get100, server, layout,
                             "pg_get100", PG_GET100)
                self.guarded("pg_post1000", PG_POST1000, self.case_post1000, server, layout,
                             "pg_post1000", PG_POST1000)
        finally:
            postgres.stop()

    def run_client_only(self, server, layout):
        """Nothing can be seeded without the REST API; still say whether the CLI path exists."""
        status, body = request(server.url, "GET", CLIENT, self.client_headers(layout))
        if not endpoint_missing(status, body):
            self.rows["cli100"].missing = "n/a (needs the REST API to seed)"

    def probe_single_connection(self):
        """The baseline with one connection: a healthy machine serves 8 at least as fast."""
        result = self.generator.run(Load(self.baseline.url + "/", {}), connections=1)
        self.single_connection_rps = result.rps
        log(f"  baseline, one connection: {result.rps:,.0f} req/s")

    def measure_baseline_only(self):
        """The baseline's figure when no case can run next to it."""
        load = Load(self.baseline.url + "/", {})
        self.baseline.reset_peak_rss()
        runs = [self.generator.run(load) for _ in range(self.settings.rounds)]
        self.record_baseline(max(runs, key=lambda r: r.rps), self.baseline.peak_rss_mb())

    def record_baseline(self, result, rss_mb):
        """Keep one baseline figure (the best of the rounds next to a case).

        Ratios divide by the best baseline figure of the whole run: when the machine slows
        down, the baseline (many small requests) loses far more than phase_lite does, so a
        slow baseline run would flatter phase_lite; the best one never does.
        """
        self.baselines.append((result, rss_mb))
        results = [r for r, _ in self.baselines]
        best = max(results, key=lambda r: r.rps)
        row = Row("Baseline: bare Flask + waitress, constant JSON", rps=best.rps,
                  p50_ms=best.p50_ms, p99_ms=best.p99_ms,
                  rss_mb=max(rss or 0 for _, rss in self.baselines),
                  errors=sum(r.errors for r in results), requests=sum(r.requests for r in results))
        row.notes.append(f"best of the run; next to each case: "
                         f"{min(r.rps for r in results):,.0f} to {best.rps:,.0f} req/s")
        if self.yardstick_cpu["baseline"]:
            row.cpu_us = statistics.median(self.yardstick_cpu["baseline"])
        self.rows["baseline"] = row

    def record_ceiling(self, result):
        """Keep the ceiling's best run next to a case; ratios use the best of the run."""
        self.ceilings.append(result)
        best = max(self.ceilings, key=lambda r: r.rps)
        row = Row("Ceiling: bare WSGI app + waitress, the GET 100 body", rps=best.rps,
                  p50_ms=best.p50_ms, p99_ms=best.p99_ms, ratio_shown=False,
                  errors=sum(r.errors for r in self.ceilings),
                  requests=sum(r.requests for r in self.ceilings))
        row.notes.append(f"best of the run; next to each case: "
                         f"{min(r.rps for r in self.ceilings):,.0f} to {best.rps:,.0f} req/s")
        if self.yardstick_cpu["ceiling"]:
            row.cpu_us = statistics.median(self.yardstick_cpu["ceiling"])
        self.rows["ceiling"] = row

    def seed_measured(self, server, layout):
        """Fill Staging (reference targets) and Development (100); True or a reason."""
        status, body = post(server, layout, "Staging", seed.staging_secrets())
        if endpoint_missing(status, body):
            return MISSING
        if status != 200:
            return f"n/a (seeding answered {status})"
        status, body = post(server, layout, "Development", seed.make_secrets(100))
        if status != 200:
            return f"n/a (seeding answered {status})"
        return True

    # -- the cases -----------------------------------------------------------------------

    def measure_get(self, server, name, path, headers, expect_count, check=None,
                    companion=None) -> Row:
        """Probe once (404 = endpoint missing, wrong answer = n/a), then load with wrk."""
        status, body = request(server.url, "GET", path, headers)
        if endpoint_missing(status, body):
            return Row(name, missing=MISSING)
        if status != 200:
            return Row(name, missing=f"n/a (answered {status}: {body[:80]!r})")
        items = orjson.loads(body)
        if not isinstance(items, list) or len(items) != expect_count:
            count = len(items) if isinstance(items, list) else type(items).__name__
            return Row(name, missing=f"n/a (expected {expect_count} secrets, got {count})")
        notes = [f"body {fmt_bytes(len(body))}"]
        if check:
            notes.extend(check(items))
        row = self.measure_paired(server, name, Load(server.url + path, headers), companion)
        row.notes[:0] = notes
        return row

    def measure_paired(self, server, name, load: Load, companion=None) -> Row:
        """Alternate baseline and case runs for a few rounds and keep the best of each.

        Other processes on the machine only ever slow a run down, so the best of a few short
        runs is the figure least disturbed by them. ``companion`` (server, Load) is a
        reference case run in the same rounds, so that two cases are compared from runs made
        seconds apart (its best req/s lands in ``Row.companion_rps``).
        """
        sides = [(self.baseline, Load(self.baseline.url + "/", {})), (server, load)]
        if companion is not None:
            sides.append(companion)
        if self.ceiling is not None:
            sides.append((self.ceiling, Load(self.ceiling.url + "/", {})))
        for side_server, _ in sides:
            side_server.reset_peak_rss()
        if self.settings.warmup:
            for _, side_load in sides:
                self.generator.run(side_load, self.settings.warmup)
        runs = [[] for _ in sides]
        cpu = [[] for _ in sides]
        for _ in range(self.settings.rounds):
            for index, (side_server, side_load) in enumerate(sides):
                result, spent = self.run_counted(side_server, side_load)
                runs[index].append(result)
                if spent is not None:
                    cpu[index].append(spent)
        self.yardstick_cpu["baseline"].extend(cpu[0])
        if self.ceiling is not None:
            self.yardstick_cpu["ceiling"].extend(cpu[-1])
        base, best, *other = [max(side_runs, key=lambda r: r.rps) for side_runs in runs]
        self.record_baseline(base, self.baseline.peak_rss_mb())
        if self.ceiling is not None:
            self.record_ceiling(other.pop())
        case_runs = runs[1]
        row = Row(name, rps=best.rps, p50_ms=best.p50_ms, p99_ms=best.p99_ms,
                  rss_mb=server.peak_rss_mb(), errors=sum(r.errors for r in case_runs),
                  requests=sum(r.requests for r in case_runs),
                  cpu_us=statistics.median(cpu[1]) if cpu[1] else None)
        row.paired_rps = base.rps
        if other:
            row.companion_rps = other[0].rps
        if row.errors:
            row.notes.append(f"{row.errors} errors")
        log(f"  {name}: " + "; ".join(" ".join(f"{r.rps:,.1f}" for r in side_runs)
                                      for side_runs in runs) + " req/s (baseline first)")
        return row

    def run_counted(self, server, load: Load):
        """One load run, and the server's CPU time per request during it (µs, or None)."""
        before = server.cpu_seconds()
        result = self.generator.run(load)
        after = server.cpu_seconds()
        if before is None or after is None or not result.requests:
            return result, None
        return result, (after - before) / result.requests * 1e6

    def measure(self, server, name, load: Load) -> Row:
        """One run (the writers: every request must succeed, so no best-of)."""
        server.reset_peak_rss()
        result, spent = self.run_counted(server, load)
        row = Row(name, rps=result.rps, p50_ms=result.p50_ms, p99_ms=result.p99_ms,
                  rss_mb=server.peak_rss_mb(), errors=result.errors, requests=result.requests,
                  cpu_us=spent)
        if result.errors:
            row.notes.append(f"{result.errors} errors")
        log(f"  {name}: {result.rps:,.1f} req/s, {result.errors} errors")
        return row

    def case_key(self, server, layout):
        path = rest_path(layout, "Development") + f"&key={KEY}"
        self.rows["key"] = self.measure_get(server, "GET one secret by key (environment of 100)",
                                            path, rest_headers(layout), 1)

    def case_get100(self, server, layout, slot="get100",
                    name="GET 100 secrets (5 with references)"):
        self.rows[slot] = self.measure_get(server, name, rest_path(layout, "Development"),
                                           rest_headers(layout), 100, check=references_resolved)

    def case_not_modified(self, server, layout):
        """The GET 100 of a client that has it already: 304, no body (still authenticated,
        scoped, counted and audited), next to the full answer in the same rounds."""
        path, headers = rest_path(layout, "Development"), rest_headers(layout)
        status, _, answer_headers = request(server.url, "GET", path, headers, with_headers=True)
        tag = answer_headers.get("ETag")
        if status != 200 or not tag:
            self.rows["notmodified"] = Row(NOT_MODIFIED, missing="n/a (no ETag on the GET)")
            return
        conditional = dict(headers, **{"If-None-Match": tag})
        status, body = request(server.url, "GET", path, conditional)
        if status != 304 or body:
            self.rows["notmodified"] = Row(
                NOT_MODIFIED, missing=f"n/a (answered {status} with {len(body)} bytes)")
            return
        full = Load(server.url + path, headers)
        row = self.measure_paired(server, NOT_MODIFIED, Load(server.url + path, conditional),
                                  companion=(server, full))
        row.notes[:0] = [f"no body, keep-alive; the full answer in the same rounds: "
                         f"{fmt_rps(row.companion_rps)} req/s"]
        self.rows["notmodified"] = row

    def case_cli100(self, server, layout):
        self.rows["cli100"] = self.measure_get(
            server, "CLI path: GET 100 secrets (`phase secrets export`)", CLIENT,
            self.client_headers(layout), 100, check=wire_ciphertexts)

    def client_headers(self, layout):
        # What `phase secrets export` sends (cli-captured-requests.txt).
        return {"User-Agent": "phase-cli/1.21.3 bench", "Accept": "*/*",
                "Authorization": layout.authorization,
                "Environment": layout.environments["Development"], "KeyDigest": "",
                "Path": "/", "dynamic": "true", "lease": "true"}

    def case_get10k(self, server, layout):
        started = time.perf_counter()
        server.reset_peak_rss()
        for batch in range(10):
            entries = seed.make_secrets(1000, seed=1000 + batch, prefix=f"LARGE{batch}_")
            status, body = post(server, layout, "Large", entries)
            if status != 200:
                raise RuntimeError(f"seeding 10,000 secrets: answered {status}: {body[:80]!r}")
        seconds = time.perf_counter() - started
        seed_rss = server.peak_rss_mb()
        self.facts.append(f"Seeding 10,000 secrets over HTTP (10 POSTs of 1,000): {seconds:.1f} s, "
                          f"server peak RSS {fmt_mb(seed_rss)}")
        get100 = Load(server.url + rest_path(layout, "Development"), rest_headers(layout))
        self.rows["get10k"] = self.measure_get(server, "GET 10,000 secrets",
                                               rest_path(layout, "Large"), rest_headers(layout),
                                               10_000, companion=(server, get100))

    def case_post1000(self, server, layout, slot="post1000",
                      name="POST 1,000 secrets in one request"):
        times = []
        server.reset_peak_rss()
        for n in range(self.settings.posts):
            entries = seed.make_secrets(1000, seed=2000 + n, prefix=f"IMPORT{n}_",
                                        references=False)
            body = orjson.dumps({"secrets": entries})
            headers = dict(rest_headers(layout), **{"Content-Type": "application/json"})
            started = time.perf_counter()
            status, answer = request(server.url, "POST", rest_path(layout, f"Import{n}"),
                                     headers, body)
            times.append(time.perf_counter() - started)
            if endpoint_missing(status, answer):
                self.rows[slot] = Row(name, missing=MISSING)
                return
            if status != 200 or len(orjson.loads(answer)) != 1000:
                raise RuntimeError(f"POST of 1,000 answered {status}: {answer[:80]!r}")
        row = Row(name, rps=len(times) / sum(times),
                  p50_ms=statistics.median(times) * 1000, p99_ms=max(times) * 1000,
                  rss_mb=server.peak_rss_mb(), ratio_shown=False)
        row.notes.append(f"{len(times)} sequential request{'s' if len(times) > 1 else ''}, "
                         f"each into an empty environment; p99 column = slowest")
        log(f"  {name}: {', '.join(f'{t:.2f}' for t in times)} s")
        self.rows[slot] = row

    def case_writers(self, server, layout):
        headers = dict(rest_headers(layout), **{"Content-Type": "application/json"})
        load = Load(server.url + rest_path(layout, "Writers"), headers, method="POST",
                    writers=True, prefix=random_tokens.token_hex(4).upper())
        row = self.measure(server, "8 concurrent writers, one secret per POST", load)
        row.notes.append(f"{self.settings.connections} connections, unique keys, "
                         f"non-2xx counted as errors")
        self.rows["writers"] = row

    # -- the same GET with 1,000,000 secrets in other environments -----------------------

    def case_console(self):
        """Server time of the console's app overview (in-process: no sockets, one thread)."""
        found = console.measure_overview(self.workdir)
        row = Row(CONSOLE_CASE, rps=1000 / found["mean_ms"], p50_ms=found["p50_ms"],
                  p99_ms=found["p99_ms"], ratio_shown=False)
        row.notes.append(f"server time in-process, one thread; page {fmt_bytes(found['bytes'])}")
        self.rows["console"] = row

    def case_lockbox(self):
        """Server time of a Lockbox share created then opened once (in-process)."""
        found = lockbox.measure_share_round_trip(self.workdir)
        row = Row(LOCKBOX_CASE, rps=1000 / found["mean_ms"], p50_ms=found["p50_ms"],
                  p99_ms=found["p99_ms"], ratio_shown=False)
        row.notes.append("server time in-process, one thread; two durable commits per pair "
                         "(req/s: pairs per second)")
        self.rows["lockbox"] = row

    def run_large(self):
        total = self.settings.large_secrets
        started = time.perf_counter()
        source, seeded = seed.large_data_dir(total, log)
        data_dir = self.workdir / "large"
        seed.copy_data_dir(source, data_dir)
        prepared = time.perf_counter() - started
        if seeded is None:
            self.facts.append(f"{total:,} other secrets: cached database {source.name} "
                              f"({db_size(data_dir)}), copied in {prepared:.1f} s")
        else:
            self.facts.append(f"Seeding {total:,} other secrets through the domain layer: "
                              f"{seeded:.0f} s ({total / seeded:,.0f} secrets/s, "
                              f"database {db_size(data_dir)}; cached as {source.name})")
        layout = seed.create_bench_app(data_dir, ("Development", "Staging"))
        # The same GET on a database holding nothing else, measured in the same rounds.
        empty_dir = self.workdir / "empty"
        seed.init_data_dir(empty_dir)
        empty_layout = seed.create_bench_app(empty_dir, ("Development", "Staging"))
        name = f"GET 100 secrets, {total:,} in other environments"
        with phase_lite_server(data_dir, self.workdir, self.server_cpus) as server, \
                phase_lite_server(empty_dir, self.workdir, self.server_cpus) as empty:
            ready = self.seed_measured(server, layout)
            if ready is True:
                ready = self.seed_measured(empty, empty_layout)
            if ready is not True:
                self.rows["large"] = Row(name, missing=ready)
                return
            reference = Load(empty.url + rest_path(empty_layout, "Development"),
                             rest_headers(empty_layout))
            self.rows["large"] = self.measure_get(
                server, name, rest_path(layout, "Development"), rest_headers(layout), 100,
                check=references_resolved, companion=(empty, reference))


# -- requests --------------------------------------------------------------------------------


def rest_path(layout, env_name):
    return f"{REST}?app_id={layout.app_id}&env={env_name}"


def rest_headers(layout):
    return {"Authorization": layout.authorization, "User-Agent": "bench"}


def post(server, layout, env_name, entries):
    headers = dict(rest_headers(layout), **{"Content-Type": "application/json"})
    return request(server.url, "POST", rest_path(layout, env_name), headers,
                   orjson.dumps({"secrets": entries}))


def endpoint_missing(status, body) -> bool:
    """A 404 from routing (no such endpoint), not a domain 404 naming an app or secret."""
    if status != 404:
        return False
    try:
        return orjson.loads(body).get("error") in ("Not found.", "Not Found")
    except (orjson.JSONDecodeError, AttributeError):
        return True


def references_resolved(items):
    left = sum(1 for item in items if "${" in (item.get("value") or ""))
    return [f"{left} references left unresolved"] if left else []


def wire_ciphertexts(items):
    plain = sum(1 for item in items if not str(item.get("value", "")).startswith("ph:v1:"))
    return [f"{plain} values not ph:v1"] if plain else []


# -- the report ------------------------------------------------------------------------------

ORDER = ("baseline", "ceiling", "key", "get100", "notmodified", "cli100", "get10k", "large", "post1000",
         "writers", "pg_get100", "pg_post1000", "console", "lockbox")
CONSOLE_CASE = "Console: app overview, 3 environments x 100 secrets"
LOCKBOX_CASE = "Lockbox: create a share, then open it once (POST + GET)"
CONSOLE_TARGET_MS = 10


def targets(rows):
    """[(verdict, text)]: PASS, FAIL or n/a for each target of the issue."""
    base = rows.get("baseline")
    checks = []

    def ratio_target(slot, minimum, label, against="baseline"):
        row, reference = rows.get(slot), rows.get(against)
        ratio = row.ratio(reference) if row else None
        yardstick = "the ceiling's" if against == "ceiling" else "baseline"
        if ratio is None:
            return checks.append(("n/a", f"{label} >= {minimum} x {yardstick} req/s"))
        verdict = "PASS" if ratio >= minimum and not row.errors else "FAIL"
        checks.append((verdict, f"{label} >= {minimum} x {yardstick} req/s: {ratio:.3f} x"
                       + (f" ({row.errors} errors)" if row.errors else "")))

    ratio_target("get100", 0.5, "GET 100 secrets")
    ratio_target("get100", 0.7, "GET 100 secrets", against="ceiling")
    ratio_target("key", 1.0, "GET one key (access log and metrics on)")
    ratio_target("cli100", 0.3, "CLI-path GET 100")
    ratio_target("cli100", 0.7, "CLI-path GET 100", against="ceiling")
    ratio_target("notmodified", 0.9, "GET 100 answered 304 (keep-alive)", against="ceiling")

    cached = rows.get("notmodified")
    label = "A GET answered 304 costs less than the full answer"
    if cached and cached.measured and cached.companion_rps:
        checks.append(("PASS" if cached.rps > cached.companion_rps and not cached.errors
                       else "FAIL",
                       f"{label}: {cached.rps:,.0f} vs {cached.companion_rps:,.0f} req/s "
                       "(measured in the same rounds)"))
    else:
        checks.append(("n/a", label))

    # Both comparisons use the reference case measured in the same rounds (seconds apart),
    # not the row measured minutes earlier; time per request at equal concurrency is 1/req/s.
    many = rows.get("get10k")
    label = "GET 10,000 takes at most 100 x the time of GET 100"
    if many and many.measured and many.companion_rps:
        times = many.companion_rps / many.rps
        checks.append(("PASS" if times <= 100 else "FAIL",
                       f"{label}: {times:.1f} x ({many.rps:,.1f} vs {many.companion_rps:,.0f} "
                       "req/s, measured in the same rounds)"))
    else:
        checks.append(("n/a", label))

    big = rows.get("large")
    label = "GET 100 with 1,000,000 other secrets within 15% of the empty-database figure"
    if big and big.measured and big.companion_rps:
        change = big.rps / big.companion_rps - 1
        checks.append(("PASS" if change >= -0.15 else "FAIL",
                       f"{label}: {big.rps:,.0f} vs {big.companion_rps:,.0f} req/s ({change:+.1%}, "
                       "measured in the same rounds)"))
    else:
        checks.append(("n/a", label))

    def post_target(slot, seconds, label):
        posts = rows.get(slot)
        if not (posts and posts.measured):
            return checks.append(("n/a", label))
        checks.append(("PASS" if posts.p99_ms < seconds * 1000 else "FAIL",
                       f"{label}: slowest {posts.p99_ms / 1000:.2f} s, "
                       f"median {posts.p50_ms / 1000:.2f} s"))

    post_target("post1000", 2, "POST of 1,000 secrets under 2 s")

    sqlite, postgres = rows.get("get100"), rows.get("pg_get100")
    label = "PostgreSQL GET 100 >= 0.7 x the SQLite GET 100 of this run"
    if sqlite and sqlite.measured and postgres and postgres.measured:
        share = postgres.rps / sqlite.rps
        checks.append(("PASS" if share >= 0.7 and not postgres.errors else "FAIL",
                       f"{label}: {share:.2f} x ({postgres.rps:,.0f} vs {sqlite.rps:,.0f} req/s)"))
    else:
        checks.append(("n/a", label))

    post_target("pg_post1000", 1, "PostgreSQL POST of 1,000 secrets under 1 s")

    writers = rows.get("writers")
    label = "8 concurrent writers see no errors"
    if writers and writers.measured:
        checks.append(("PASS" if writers.errors == 0 else "FAIL",
                       f"{label}: {writers.errors} errors in {writers.requests:,} requests"))
    else:
        checks.append(("n/a", label))
    ratio_target("writers", 0.35, "One secret per POST (8 concurrent writers)")

    page = rows.get("console")
    label = f"Console app overview (3 x 100) median server time under {CONSOLE_TARGET_MS} ms"
    if page and page.measured:
        checks.append(("PASS" if page.p50_ms < CONSOLE_TARGET_MS else "FAIL",
                       f"{label}: {page.p50_ms:.1f} ms (p99 {page.p99_ms:.1f} ms)"))
    else:
        checks.append(("n/a", label))

    peaks = [row.rss_mb for slot, row in rows.items()
             if slot != "baseline" and row.measured and row.rss_mb]
    label = "peak RSS under 200 MB"
    if peaks:
        checks.append(("PASS" if max(peaks) < 200 else "FAIL", f"{label}: {max(peaks):.0f} MB"))
    else:
        checks.append(("n/a", label))
    return checks


def render(rows, settings, generator, facts, checks, started, elapsed, loads):
    base, ceiling = rows.get("baseline"), rows.get("ceiling")
    lines = [
        f"Command: `make bench` ({generator.name}; per case a {settings.warmup}s warm-up, then "
        f"the best of {settings.rounds} runs, each next to a baseline and a ceiling run; ratios "
        f"to the best baseline (hello) and ceiling runs of the whole run, and to the best "
        f"baseline of the case's own rounds)  ",
        f"Machine: {machine()}  ",
        f"Date: {started:%Y-%m-%d %H:%M} UTC; whole run {elapsed / 60:.1f} min; "
        f"load average before/after: {loads[0]:.2f} / {loads[1]:.2f}",
        "",
        "| Case | req/s | p50 | p99 | × hello | × ceiling | × same rounds | CPU/request | "
        "peak RSS | Notes |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for slot in ORDER:
        row = rows.get(slot)
        if row is None:
            continue
        if not row.measured:
            lines.append(f"| {row.name} | {row.missing or 'n/a'} | | | | | | | | |")
            continue
        ratio = paired = to_ceiling = ""
        if row.ratio_shown and slot != "baseline" and row.ratio(base):
            ratio = f"{row.ratio(base):.3f}"
            if row.ratio(ceiling):
                to_ceiling = f"{row.ratio(ceiling):.3f}"
            if row.paired_rps:
                paired = f"{row.rps / row.paired_rps:.3f}"
        elif slot == "baseline":
            ratio = "1"
            if row.ratio(ceiling):
                to_ceiling = f"{row.ratio(ceiling):.3f}"
        elif slot == "ceiling":
            ratio, to_ceiling = (f"{row.ratio(base):.3f}" if row.ratio(base) else ""), "1"
        lines.append(f"| {row.name} | {fmt_rps(row.rps)} | {fmt_ms(row.p50_ms)} | "
                     f"{fmt_ms(row.p99_ms)} | {ratio} | {to_ceiling} | {paired} | "
                     f"{fmt_us(row.cpu_us)} | {fmt_mb(row.rss_mb)} | {'; '.join(row.notes)} |")
    lines += ["", "Targets:", ""]
    lines += [f"- {verdict} {text}" for verdict, text in checks]
    if facts:
        lines += ["", *[f"- {fact}" for fact in facts]]
    return "\n".join(lines)


def machine_warnings(bench):
    """Signs that the machine was not itself during the run (its figures flatter phase_lite)."""
    figures = [result.rps for result, _ in bench.baselines]
    warnings = []
    if len(figures) > 1 and max(figures) > 1.5 * min(figures):
        warnings.append(
            f"Warning: the baseline's best runs ranged from {min(figures):,.0f} to "
            f"{max(figures):,.0f} req/s: the machine was busy with other work during this run; "
            "re-run (or raise BENCH_ROUNDS) for a table to publish")
    single = bench.single_connection_rps
    if figures and single:
        note = (f"Baseline with one connection: {single:,.0f} req/s; with "
                f"{bench.settings.connections}: {max(figures):,.0f} req/s")
        if max(figures) < 0.8 * single:
            note = (f"Warning: {note[0].lower()}{note[1:]}. Concurrent requests were served far "
                    "slower than one at a time, which a busy host does to small requests most; "
                    "ratios to the baseline are too kind in this run: re-run for a table to "
                    "publish")
        warnings.append(note)
    return warnings


def machine():
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{os.cpu_count()} CPUs (nproc), {model}{memory}; {platform.system()} "
            f"{platform.release()}; Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}")


def fmt_cpus(cpus):
    return ",".join(str(cpu) for cpu in sorted(cpus))


def fmt_rps(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def fmt_ms(value):
    if value is None:
        return ""
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms" if value >= 10 \
        else f"{value:.2f} ms"


def fmt_bytes(size):
    return f"{size / 1024:,.0f} KB" if size >= 10240 else f"{size:,} bytes"


def fmt_us(value):
    return "" if value is None else f"{value:,.0f} µs"


def fmt_mb(value):
    return "" if value is None else f"{value:.0f} MB"


def db_size(data_dir):
    size = sum(path.stat().st_size for path in Path(data_dir).glob("phase_lite.sqlite3*"))
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def main():
    settings = Settings.from_env()
    started = datetime.now(timezone.utc)
    clock = time.monotonic()
    load_before = os.getloadavg()[0]
    if load_before > 0.5:
        log(f"note: load average {load_before:.2f} before the run; other processes on this "
            "machine will skew the figures")
    server_cpus, load_cpus = pin_cpus() if settings.pin else (None, None)
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)  # wrk and every other child of this process
    wrk = find_wrk(log)
    generator = LoadGenerator(wrk, duration=settings.duration, connections=settings.connections,
                              threads=settings.wrk_threads)
    if wrk:
        version = subprocess.run([wrk, "--version"], capture_output=True, text=True,
                                 check=False).stdout.split("Copyright")[0].strip()
        log(f"load generator: {version}")
    with tempfile.TemporaryDirectory(prefix="phase-lite-bench-") as workdir:
        bench = Bench(settings, generator, Path(workdir), server_cpus)
        try:
            bench.run()
        except Exception:
            log(traceback.format_exc())
            log("the bench stopped early; the table shows what was measured")
    bench.facts.extend(machine_warnings(bench))
    checks = targets(bench.rows)
    if server_cpus:
        bench.facts.insert(0, f"Servers pinned to CPU {fmt_cpus(server_cpus)}, load generator to "
                              f"CPU {fmt_cpus(load_cpus)} (BENCH_PIN=0 turns this off)")
    report = render(bench.rows, settings, generator, bench.facts, checks, started,
                    time.monotonic() - clock, (load_before, os.getloadavg()[0]))
    print(report)
    seed.RESULTS.mkdir(parents=True, exist_ok=True)
    (seed.RESULTS / "latest.md").write_text(report + "\n")
    return 1 if any(verdict == "FAIL" for verdict, _ in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
