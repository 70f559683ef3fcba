"""Serving as a process: start-up failures in one line, a clean stop on SIGTERM and SIGINT."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from live import REPO, LiveServer, free_port
from support import bearer_headers
from support import CSRF, make_app, without_dac_override
from phase_lite.app import open_services
from phase_lite.backup import exclusive_lock
from phase_lite.store import SqliteDatabase

pytestmark = pytest.mark.slow

BANNER = "serving on"


def serve(config, extra_env=None, preexec_fn=None):
    env = dict(os.environ, PHASE_LITE_DATA_DIR=str(config.data_dir),
               PHASE_LITE_LISTEN=f"127.0.0.1:{free_port()}")
    env.update(extra_env or {})
    return subprocess.run([sys.executable, "-m", "phase_lite.cli", "serve"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, preexec_fn=preexec_fn)


def assert_one_line_failure(result, *expected):
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    for text in expected:
        assert text in lines[0], lines
    assert BANNER not in result.stderr + result.stdout


@pytest.mark.parametrize("name, value", [
    ("PHASE_LITE_LOG_LEVEL", "LOUD"),
    ("PHASE_LITE_LOG_FORMAT", "xml"),
    ("PHASE_LITE_ACCESS_LOG", "maybe"),
    ("PHASE_LITE_METRICS", "sometimes"),
    ("PHASE_LITE_THREADS", "many"),
    ("PHASE_LITE_STOP_TIMEOUT", "-1"),
    ("PHASE_LITE_MAX_BODY_BYTES", "0"),
    ("PHASE_LITE_LISTEN", "localhost"),
    ("PHASE_LITE_LISTEN", "127.0.0.1:70000"),
    ("RATE_LIMIT_DEFAULT", "lots"),
    ("PHASE_LITE_TRUSTED_PROXIES", "not-an-ip"),
])
def test_a_bad_setting_stops_start_up_in_one_line_naming_it(config, owner, name, value):
    assert_one_line_failure(serve(config, {name: value}), name)


def test_a_port_in_use_is_one_line_and_no_banner(config, owner):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(config, {"PHASE_LITE_LISTEN": f"127.0.0.1:{port}"})
    assert_one_line_failure(result, "PHASE_LITE_LISTEN", f"127.0.0.1:{port}", "already in use")


def test_an_address_not_on_this_machine_is_one_line(config, owner):
    result = serve(config, {"PHASE_LITE_LISTEN": f"192.0.2.1:{free_port()}"})  # TEST-NET-1
    assert_one_line_failure(result, "PHASE_LITE_LISTEN", "192.0.2.1", "not an address")


def test_a_host_that_does_not_resolve_is_one_line(config, owner):
    result = serve(config, {"PHASE_LITE_LISTEN": "no-such-host.invalid:8080"})
    assert_one_line_failure(result, "PHASE_LITE_LISTEN", "no-such-host.invalid")


def test_an_unwritable_data_directory_is_one_line(config, owner):
    config.data_dir.chmod(0o500)
    try:
        result = serve(config, preexec_fn=without_dac_override)
    finally:
        config.data_dir.chmod(0o700)
    assert_one_line_failure(result, "PHASE_LITE_DATA_DIR", str(config.data_dir), "not writable")


def test_a_missing_data_directory_is_one_line(config, owner, tmp_path):
    result = serve(config, {"PHASE_LITE_DATA_DIR": str(tmp_path / "nowhere")})
    assert_one_line_failure(result, "PHASE_LITE_DATA_DIR", "phase-lite init")


def test_a_database_locked_by_a_restore_is_one_line(config, owner):
    with exclusive_lock(config):
        result = serve(config)
    assert_one_line_failure(result, "PHASE_LITE_DATABASE", "restore")


def test_an_unknown_setting_is_one_warning_line_at_start(config, owner):
    server = LiveServer(config.data_dir, {"PHASE_LITE_RATE_LIMIT_SCOPES": "node",
                                          "PHASE_LITE_TEST_ANYTHING": "1"})
    server.start()
    server.stop()
    lines = [line for line in server.log_path.read_text().splitlines()
             if "PHASE_LITE_RATE_LIMIT_SCOPES" in line]
    assert len(lines) == 1 and "WARNING" in lines[0], lines
    assert "did you mean PHASE_LITE_RATE_LIMIT_SCOPE?" in lines[0]
    assert "PHASE_LITE_TEST_ANYTHING" not in server.log_path.read_text()


def test_the_banner_comes_once_the_socket_is_bound(live_server):
    log = live_server.log_path.read_text()
    assert log.count(BANNER) == 1
    assert f"{BANNER} http://127.0.0.1:{live_server.port}" in log
    assert requests.get(live_server.url + "/health/", timeout=5).status_code == 200


def test_a_304_keeps_the_connection_open_unless_the_client_closes_it(config, owner):
    """waitress closes the connection after an answer without a Content-Length, which a 304
    never carries: phase_lite's server keeps it open, so a revalidating client does not
    reconnect for every answer; a client asking to close still gets its connection closed."""
    import http.client

    app_id = seeded_app(config, "revalidating")
    server = LiveServer(config.data_dir).start()
    headers = bearer_headers(owner)
    path = f"/v1/secrets/?app_id={app_id}&env=Development"
    try:
        tag = requests.get(server.url + path, headers=headers, timeout=10).headers["ETag"]
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            peers = []
            for _ in range(3):
                connection.request("GET", path, headers=dict(headers, **{"If-None-Match": tag}))
                answer = connection.getresponse()
                assert (answer.status, answer.read()) == (304, b"")
                assert answer.getheader("Connection") is None
                assert answer.getheader("ETag") == tag
                peers.append(connection.sock.getsockname())
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read().startswith(b"[")
            peers.append(connection.sock.getsockname())
            assert len(set(peers)) == 1  # one connection throughout
            connection.request("GET", path, headers=dict(
                headers, **{"If-None-Match": tag, "Connection": "close"}))
            answer = connection.getresponse()
            assert answer.status == 304 and answer.getheader("Connection") == "close"
            answer.read()
            assert answer.will_close
        finally:
            connection.close()
    finally:
        server.stop()


def seeded_app(config, name="stopping"):
    services = open_services(config)
    try:
        app, _ = make_app(services, name)
        return app["id"]
    finally:
        services.close()


def count(config, sql):
    db = SqliteDatabase(config.database)
    try:
        return db.scalar(sql)
    finally:
        db.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_finishes_the_request_in_flight_flushes_reads_and_exits_0(config, owner, sig):
    app_id = seeded_app(config)
    server = LiveServer(config.data_dir, {"PHASE_LITE_LOG_FORMAT": "json"}).start()
    headers = bearer_headers(owner)
    url = f"{server.url}/v1/secrets/?app_id={app_id}&env=Development"
    try:
        for _ in range(5):
            assert requests.get(url, headers=headers, timeout=10).status_code == 200
        # A write of 1,000 secrets takes a while: the signal arrives while it is answered.
        answers = []
        body = {"secrets": [{"key": f"K{i}", "value": "v" * 200} for i in range(1000)]}
        writer = threading.Thread(target=lambda: answers.append(
            requests.post(url, headers=headers, json=body, timeout=30)))
        writer.start()
        time.sleep(0.05)
        stopped_at = time.monotonic()
        server.process.send_signal(sig)
        writer.join(30)
        server.process.wait(15)
        took = time.monotonic() - stopped_at
    finally:
        server.stop()
    assert server.process.returncode == 0
    assert took < 5
    assert [a.status_code for a in answers] == [200], [a.text for a in answers]
    assert count(config, "SELECT count(*) FROM secrets WHERE deleted_at IS NULL") == 1000
    assert count(config, "SELECT count(*) FROM audit_events WHERE action = 'secrets.read'") == 5
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/health/", timeout=2)
    events = [json.loads(line) for line in server.log_path.read_text().splitlines()
              if line.startswith("{")]
    assert [e["event"] for e in events if e.get("event") in ("start", "stop")] == [
        "start", "stop"]
    assert events[-1]["unfinished"] == 0
    assert [e["status"] for e in events if e.get("method") == "POST"] == [200]


def test_stopping_is_bounded_by_the_stop_timeout(config, owner):
    server = LiveServer(config.data_dir, {"PHASE_LITE_STOP_TIMEOUT": "1"}).start()
    # A connection that sent half a request holds nothing up: the server stops at once.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as idle:
        idle.sendall(b"GET /health/ HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.2)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(15)
    server.stop()
    assert server.process.returncode == 0
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("trusted, clients, secure", [
    ("127.0.0.1", ["203.0.113.9", "198.51.100.7"], True),
    ("", ["127.0.0.1", "127.0.0.1"], False),
])
def test_forwarding_headers_reach_the_app_from_trusted_proxies_only(config, owner, trusted,
                                                                     clients, secure):
    server = LiveServer(config.data_dir, {"PHASE_LITE_TRUSTED_PROXIES": trusted}).start()
    try:
        for header in ({"X-Forwarded-For": "6.6.6.6, 203.0.113.9"},
                       {"X-Real-IP": "198.51.100.7"}):
            assert requests.get(server.url + "/v1/secrets/", headers=header).status_code == 401
        page = requests.get(server.url + "/console/sign-in",
                            headers={"X-Forwarded-Proto": "https"})
    finally:
        server.stop()
    logged = [line.split()[3] for line in server.log_path.read_text().splitlines()
              if '"GET /v1/secrets/"' in line]
    assert logged == clients
    assert ("Secure" in page.headers["Set-Cookie"]) is secure


def test_an_appending_proxy_gives_its_client_not_the_one_the_client_wrote(config, owner, db,
                                                                          demo):
    """Behind a proxy that appends to X-Forwarded-For, the audit log, the access log and the
    sign-in throttle all take the right-most address the proxy wrote, never the client's."""
    real = "203.0.113.9"
    server = LiveServer(config.data_dir, {"PHASE_LITE_TRUSTED_PROXIES": "127.0.0.1"}).start()
    try:
        url = f"{server.url}/v1/secrets/?app_id={demo[0]['id']}&env=Development"
        written = requests.post(url, headers={**bearer_headers(owner),
                                              "X-Forwarded-For": f"6.6.6.6, {real}"},
                                json={"secrets": [{"key": "K", "value": "v"}]}, timeout=10)
        assert written.status_code == 200, written.text
        with requests.Session() as browser:
            page = browser.get(server.url + "/console/sign-in", timeout=10)
            token = CSRF.search(page.text).group(1)
            statuses = []
            for attempt in range(21):  # 20 per address; each a new email and a new "client"
                statuses.append(browser.post(
                    server.url + "/console/sign-in", timeout=10,
                    headers={"X-Forwarded-For": f"6.6.6.{attempt}, {real}"},
                    data={"csrf_token": token, "email": f"nobody{attempt}@example.com",
                          "password": "wrong"}, allow_redirects=False).status_code)
    finally:
        server.stop()
    assert statuses == [401] * 20 + [429]
    addresses = {row["ip_address"] for row in db.all(
        "SELECT ip_address FROM audit_events WHERE channel = 'api'")}
    assert addresses == {real}
    logged = [line.split()[3] for line in server.log_path.read_text().splitlines()
              if '"POST /v1/secrets/"' in line or '"POST /console/sign-in"' in line]
    assert logged == [real] * 22
