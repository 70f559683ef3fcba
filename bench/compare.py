"""Compare revisions of phase_lite on this machine: the same requests, served in turn.

``make bench`` gives ratios to a bare Flask + waitress baseline, and those move from one
machine to another (another CPU changes the two sides by different amounts). Whether a change
made phase_lite slower is answered here instead: an earlier revision and the working tree (or
two revisions) serve the same cases on the same machine in the same minutes::

    .venv/bin/python bench/compare.py d1dc67b            # that revision, then the working tree
    .venv/bin/python bench/compare.py d1dc67b c44129c    # two revisions

Each revision's ``phase_lite`` package is taken with ``git archive`` into a temporary
directory and served from there (``python -m phase_lite.cli serve`` with this virtualenv,
default settings, pinned to one CPU as ``make bench`` does). One data directory is written by
the working tree's code (``seed.py``: the bench app, 100 secrets of which 5 hold references)
and each revision serves its own copy of it, so what one writes (its read events, the clients'
ciphertexts it fills in) never reaches another; an older revision opens the newer schema and
leaves the tables and columns it does not know alone.

For each case, every round serves the same wrk load from each revision in turn (a warm-up,
then BENCH_DURATION seconds). The table gives each revision's best req/s, its median server CPU
time per request (user + system of the whole process, all threads, from /proc/<pid>/stat) and
both relative to the first revision. CPU time per request is the steadier figure on a busy
machine: other processes slow a run down, but hardly change what one request costs.

Settings: BENCH_ROUNDS (5), BENCH_DURATION (3 s), BENCH_WARMUP (1 s), BENCH_CONNECTIONS (8),
BENCH_WRK_THREADS (2), BENCH_CASES (``key,get100,cli100``).
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import seed
from load import Load, LoadGenerator, find_wrk
from run import CLIENT, KEY, rest_headers, rest_path, post
from servers import REPO, phase_lite_server, pin_cpus

CASES = {
    "key": "GET one secret by key (environment of 100)",
    "get100": "GET 100 secrets (5 with references)",
    "cli100": "CLI path: GET 100 secrets (`phase secrets export`)",
}
WORKING_TREE = "working tree"


def main(argv=None):
    revisions = (argv if argv is not None else sys.argv[1:]) or []
    if not 1 <= len(revisions) <= 2 or any(r.startswith("-") for r in revisions):
        sys.exit(__doc__.split("\n\n")[1].strip() + "\n\nusage: compare.py REV [REV]")
    if len(revisions) == 1:
        revisions.append(WORKING_TREE)
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    warmup = int(os.environ.get("BENCH_WARMUP", "1"))
    cases = os.environ.get("BENCH_CASES", ",".join(CASES)).split(",")
    unknown = [case for case in cases if case not in CASES]
    if unknown:
        sys.exit(f"BENCH_CASES: unknown case {unknown[0]!r} (known: {', '.join(CASES)})")
    server_cpus, load_cpus = pin_cpus()
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)
    generator = LoadGenerator(find_wrk(print),
                              duration=int(os.environ.get("BENCH_DURATION", "3")),
                              connections=int(os.environ.get("BENCH_CONNECTIONS", "8")),
                              threads=int(os.environ.get("BENCH_WRK_THREADS", "2")))
    with tempfile.TemporaryDirectory(prefix="phase-lite-compare-") as temp:
        work = Path(temp)
        codes = {revision: export(revision, work / f"code-{n}")
                 for n, revision in enumerate(revisions)}
        data, layout = seeded(work, server_cpus)
        copies = {}
        for n, revision in enumerate(revisions):
            copies[revision] = work / f"data-{n}"
            shutil.copytree(data, copies[revision])
        figures = {(case, revision): [] for case in cases for revision in revisions}
        for case in cases:
            for round_number in range(rounds):
                for revision in revisions:
                    with phase_lite_server(copies[revision], work, server_cpus,
                                           code=codes[revision]) as server:
                        load = case_load(case, server, layout)
                        generator.run(load, duration=warmup)
                        before = cpu_seconds(server.process.pid)
                        result = generator.run(load)
                        spent = cpu_seconds(server.process.pid) - before
                    if result.errors or not result.requests:
                        sys.exit(f"{revision}: {case}: {result.errors} errors in "
                                 f"{result.requests} requests")
                    figures[case, revision].append(
                        (result.requests / result.seconds, spent / result.requests * 1e6))
                    print(f"  {case} round {round_number + 1} {revision}: "
                          f"{figures[case, revision][-1][0]:,.0f} req/s, "
                          f"{figures[case, revision][-1][1]:.0f} us CPU per request",
                          file=sys.stderr)
    print(table(cases, revisions, figures))


def export(revision, target: Path) -> Path:
    """The directory to serve ``revision`` from (its phase_lite package, as committed)."""
    if revision == WORKING_TREE:
        return REPO
    target.mkdir()
    archive = subprocess.run(["git", "archive", "--format=tar", revision, "phase_lite"],
                             cwd=REPO, capture_output=True, check=False)
    if archive.returncode:
        sys.exit(f"git archive {revision}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def seeded(work: Path, cpus):
    """A data directory with the bench app: 100 secrets in Development (5 with references
    into Staging), written over HTTP by the working tree's code."""
    data = work / "data"
    seed.init_data_dir(data)
    layout = seed.create_bench_app(data, ("Development", "Staging"))
    with phase_lite_server(data, work, cpus) as server:
        for env_name, entries in (("Staging", seed.staging_secrets()),
                                  ("Development", seed.make_secrets(100))):
            status, body = post(server, layout, env_name, entries)
            if status != 200:
                sys.exit(f"seeding {env_name}: {status} {body[:200]!r}")
    return data, layout


def case_load(case, server, layout) -> Load:
    if case == "key":
        return Load(f"{server.url}{rest_path(layout, 'Development')}&key={KEY}",
                    rest_headers(layout))
    if case == "get100":
        return Load(server.url + rest_path(layout, "Development"), rest_headers(layout))
    return Load(server.url + CLIENT, {  # what `phase secrets export` sends
        "User-Agent": "phase-cli/1.21.3 bench", "Accept": "*/*",
        "Authorization": layout.authorization,
        "Environment": layout.environments["Development"], "KeyDigest": "", "Path": "/"})


def cpu_seconds(pid) -> float:
    """User + system CPU time of a process and all its threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def table(cases, revisions, figures) -> str:
    first = revisions[0]
    lines = ["| Case | Revision | best req/s | x first | CPU per request (median) | x first |",
             "|---|---|---:|---:|---:|---:|"]
    for case in cases:
        best_first = max(rps for rps, _ in figures[case, first])
        cpu_first = statistics.median(cpu for _, cpu in figures[case, first])
        for revision in revisions:
            best = max(rps for rps, _ in figures[case, revision])
            cpu = statistics.median(cpu for _, cpu in figures[case, revision])
            lines.append(f"| {CASES[case]} | {revision} | {best:,.0f} | "
                         f"{best / best_first:.3f} | {cpu:.0f} us | {cpu / cpu_first:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
