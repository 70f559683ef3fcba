"""The served process: `make run` from nothing, restarts keeping data, refusing a wrong key."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

import support
from live import REPO, LiveServer, free_port
from phase_lite import keyring
from phase_lite.app import open_services
from phase_lite.store import SqliteDatabase

pytestmark = pytest.mark.slow


def test_make_run_initialises_writes_the_token_file_and_serves(tmp_path):
    """`make run` from nothing: the Owner token in a 0600 file it names, the data directory and
    key file named, and the README's walkthrough then goes on from there (its init sees the
    install and the token file; its first request works), one story."""
    from test_readme import walkthrough

    port = free_port()
    token_file = tmp_path / "owner.token"
    data_dir = tmp_path / "data"
    env = dict(os.environ, PHASE_LITE_DATA_DIR=str(data_dir),
               PHASE_LITE_LISTEN=f"127.0.0.1:{port}")
    log = tmp_path / "make-run.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(["make", "--no-print-directory", "run",
                                    f"TOKEN_FILE={token_file}"], cwd=REPO, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                health = requests.get(f"http://127.0.0.1:{port}/health/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail(f"no /health/ within 30 s: {log.read_text()[-2000:]}")
        assert health.json()["status"] == "alive"
        output = log.read_text()
        assert "pss_" not in output  # the token went to the file
        assert f"token is in {token_file} (mode 0600)" in output
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = re.fullmatch(r"pss_user:v1(:[0-9a-f]{64}){4}\n", token_file.read_text())
        assert token, output
        bearer = token.group(0).split(":")[2]
        for shown in (f"Data directory:  {data_dir}", f"Master key:      {data_dir}/master.key",
                      "apart from the backups"):
            assert output.count(shown) == 2, output  # by init, then by serve's banner
        assert "/service/public/v1/secrets/" in output
        assert f"PHASE_HOST=http://127.0.0.1:{port}" in output
        apps = requests.get(f"http://127.0.0.1:{port}/service/public/v1/apps/",
                            headers={"Authorization": f"Bearer User {bearer}"}, timeout=5)
        assert apps.status_code == 200

        (tmp_path / ".venv").symlink_to(REPO / ".venv")
        (_, init_block, _), (_, first_request, _) = walkthrough()[:2]
        script = f"set -euo pipefail\n{init_block}\n{first_request}"
        walked = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True,
                                text=True, timeout=120,
                                env=env | {"HOST": f"http://127.0.0.1:{port}"})
        assert walked.returncode == 0, walked.stderr
        assert "owner.token holds a live token of owner@localhost." in walked.stdout
        assert walked.stdout.splitlines()[-1] == '{"data":[]}'
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def test_restart_keeps_data_and_tokens(config, owner):
    server = LiveServer(config.data_dir).start()
    headers = {"Authorization": f"Bearer {owner.bearer_token}"}
    try:
        subprocess.run([sys.executable, "-m", "phase_lite.cli", "apps", "create", "kept"],
                       env=server.env, check=True, capture_output=True, timeout=60)
    finally:
        server.stop()
    server = LiveServer(config.data_dir).start()
    try:
        listed = subprocess.run([sys.executable, "-m", "phase_lite.cli", "apps", "list", "--json"],
                                env=server.env, check=True, capture_output=True, timeout=60)
        assert "kept" in listed.stdout.decode()
        response = requests.get(server.url + "/v1/secrets/", headers=headers, timeout=5)
        assert response.status_code != 401
    finally:
        server.stop()


def test_serve_refuses_the_wrong_master_key_and_says_why(config, owner):
    env = dict(os.environ, PHASE_LITE_DATA_DIR=str(config.data_dir),
               PHASE_LITE_LISTEN=f"127.0.0.1:{free_port()}",
               PHASE_LITE_MASTER_KEY=keyring.encode_master_key(keyring.generate_master_key()))
    result = subprocess.run([sys.executable, "-m", "phase_lite.cli", "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: PHASE_LITE_MASTER_KEY: this master key does not match the database "
        f"{config.database} (wrong key?)"
    ]


def test_sigterm_writes_buffered_read_events(config, owner):
    services = open_services(config)
    app_id = support.make_app(services, "audited")[0]["id"]
    services.close()
    server = LiveServer(config.data_dir).start()
    try:
        headers = {"Authorization": f"Bearer {owner.bearer_token}"}
        for _ in range(5):
            response = requests.get(f"{server.url}/v1/secrets/?app_id={app_id}&env=Development",
                                    headers=headers, timeout=5)
            assert response.status_code == 200
    finally:
        server.stop(signal.SIGTERM)
    assert server.process.returncode == 0
    db = SqliteDatabase(config.database)
    reads = db.scalar("SELECT count(*) FROM audit_events WHERE action = 'secrets.read'")
    db.close()
    assert reads == 5
