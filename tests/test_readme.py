"""The README's walkthrough, run as written against a live server, so it cannot rot.

The blocks to run are the ```sh blocks right after a ``<!-- walkthrough -->`` line (or
``<!-- walkthrough: phase-cli -->`` for those that need the real Phase CLI). They run in order in
bash, each with ``set -euo pipefail`` and the variables and functions the earlier blocks set, in
a directory holding only a link to the repository's ``.venv``, as a fresh clone's root would.
A ```text block right after a walkthrough block is what the README says it prints: each of its
lines must be a line of the block's output, ``<id>``, ``<time>`` and the like standing for any
word (ids and times change from run to run).
"""

import re
import subprocess

import pytest

from live import REPO, LiveServer, free_port
from support import PHASE

README = REPO / "README.md"
BLOCK = re.compile(
    r"^<!-- walkthrough(?:: (?P<needs>[\w-]+))? -->\n```sh\n(?P<script>.*?)^```\n"
    r"(?:\n```text\n(?P<expected>.*?)^```\n)?",
    re.M | re.S,
)
ASSIGNED = re.compile(r"^\s*(?:export\s+)?([A-Za-z_]\w*)=", re.M)
FUNCTION = re.compile(r"^([A-Za-z_]\w*)\(\) \{", re.M)


def walkthrough():
    return [(m["needs"], m["script"], m["expected"]) for m in BLOCK.finditer(README.read_text())]


def expected_pattern(line):
    return re.compile(re.sub(r"<\w+>", lambda _: r"\S+", re.escape(line)))


def run_walkthrough(tmp_path, *, phase_cli):
    """Run every block (those needing the Phase CLI only with ``phase_cli``) against a fresh
    server; return the outputs in order."""
    blocks = [b for b in walkthrough() if phase_cli or b[0] is None]
    scripts = "\n".join(script for _, script, _ in blocks)
    names = sorted(set(ASSIGNED.findall(scripts)))
    functions = sorted(set(FUNCTION.findall(scripts)))
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(REPO / ".venv")
    data_dir = clone / "data"
    data_dir.mkdir(mode=0o700)
    state = tmp_path / "state.sh"
    state.write_text("")
    server = LiveServer(data_dir)
    path = f"{PHASE.parent}:/usr/local/bin:/usr/bin:/bin" if phase_cli else "/usr/bin:/bin"
    env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PHASE_LITE_DATA_DIR": str(data_dir), "PHASE_LITE_LISTEN": f"127.0.0.1:{server.port}",
           "HOST": server.url, "MIRROR_HOST": f"http://127.0.0.1:{free_port()}",
           "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
           "COLUMNS": "250"}
    save = (f"declare -p {' '.join(names)} > {state} 2>/dev/null || true\n"
            + (f"declare -f {' '.join(functions)} >> {state} || true\n" if functions else ""))
    outputs = []
    try:
        for number, (_, script, expected) in enumerate(blocks):
            program = f"set -euo pipefail\nsource {state}\n{script}\n{save}"
            result = subprocess.run(["bash", "-c", program], cwd=clone, env=env, text=True,
                                    capture_output=True, timeout=300)
            assert result.returncode == 0, (
                f"walkthrough block {number + 1} failed:\n{script}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}")
            lines = result.stdout.splitlines()
            for line in (expected or "").splitlines():
                pattern = expected_pattern(line)
                assert any(pattern.fullmatch(out) for out in lines), (
                    f"block {number + 1} should print {line!r}; it printed:\n{result.stdout}")
            outputs.append(result.stdout)
            if number == 0:  # the init block: now serve, as the README says next
                server.start()
    finally:
        server.stop()
    return outputs


def test_the_walkthrough_is_marked_and_defines_what_it_uses():
    blocks = walkthrough()
    assert len(blocks) >= 8
    assert blocks[0][1].strip() == ".venv/bin/phase-lite init --token-file owner.token"
    assert [needs for needs, _, _ in blocks if needs] == ["phase-cli", "phase-cli"]
    defined = set()
    for _, script, _ in blocks:
        used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", script))
        assert used <= defined | set(ASSIGNED.findall(script)) | {"HOST", "MIRROR_HOST"}, \
            script
        defined |= set(ASSIGNED.findall(script))
        assert not re.search(r"\bjq\b", script)  # python3 reads the JSON answers


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path):
    outputs = run_walkthrough(tmp_path, phase_cli=False)
    assert "pss_" not in outputs[0]  # the token went to the file
    scripts = [script for needs, script, _ in walkthrough() if needs is None]
    audit = next(i for i, script in enumerate(scripts) if "audit list" in script)
    assert "localhost" not in outputs[audit] and "db.internal" not in outputs[audit]


@pytest.mark.clients
def test_the_walkthrough_runs_with_the_phase_cli(tmp_path, installed_clients):
    outputs = run_walkthrough(tmp_path, phase_cli=True)
    ran = [needs for needs, _, _ in walkthrough()].index("phase-cli")
    assert "localhost" in outputs[ran].splitlines()  # phase run: the value in the process
    assert outputs[ran + 1].splitlines() == ['DB_HOST="localhost"']  # imported into Staging
