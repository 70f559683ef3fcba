"""The access log: one line per request with its fields, never a query value or a secret."""

import json
import re
import time

import pytest
import requests
from flask import Response

from live import LiveServer
from support import bearer_headers



def account_of(db, issued):
    return db.scalar("SELECT coalesce(user_id, service_account_id) FROM tokens WHERE id = ?",
                     (issued.id,))


TEXT_LINE = re.compile(r'^(?P<time>\S+Z) INFO phase_lite\.access (?P<client>\S+) '
                       r'"(?P<method>\S+) (?P<path>\S+)" (?P<status>\d+) (?P<bytes>\d+) '
                       r"(?P<duration_ms>\d+\.\d\d)ms account=(?P<account>\S+)$")


@pytest.fixture
def logged(app_with):
    """A test client of an app configured with ``changes``, and the lines it writes."""

    def make(**changes):
        flask_app = app_with(**changes)
        written = []
        writer = flask_app.extensions.get("phase_lite_access_log")
        if writer is not None:
            writer.write = lambda data: written.append(data.decode())

        def lines():
            if writer is not None:
                writer.flush()
            return "".join(written).splitlines(keepends=True)

        return flask_app.test_client(), lines

    return make


def test_one_line_per_request_with_its_fields(logged, db, demo, sa_token, sa_headers):
    client, lines = logged()
    app_row, _ = demo
    created = client.post(f"/v1/secrets/?app_id={app_row['id']}&env=Development",
                          headers=sa_headers, json={"secrets": [{"key": "DB_URL", "value": "x"}]})
    assert created.status_code == 200
    query = f"app_id={app_row['id']}&env=Development&key=DB_URL"
    read = client.get(f"/service/public/v1/secrets/?{query}", headers=sa_headers)  # fast path
    assert read.status_code == 200
    missing = client.get("/v1/nothing/?token=abc")
    assert missing.status_code == 404

    lines = lines()
    assert len(lines) == 3 and all(line.endswith("\n") for line in lines)
    fields = [TEXT_LINE.match(line.rstrip("\n")).groupdict() for line in lines]
    assert [(f["method"], f["path"], f["status"]) for f in fields] == [
        ("POST", "/v1/secrets/", "200"),
        ("GET", "/service/public/v1/secrets/", "200"),
        ("GET", "/v1/nothing/", "404"),
    ]
    assert int(fields[1]["bytes"]) == len(read.data)
    assert int(fields[2]["bytes"]) == len(missing.data)
    assert [f["account"] for f in fields] == [account_of(db, sa_token)] * 2 + ["-"]
    assert all(f["client"] == "127.0.0.1" for f in fields)
    assert float(fields[0]["duration_ms"]) > 0
    text = "".join(lines)
    for secret_text in (app_row["id"], "DB_URL", "Development", "abc", "x\"",
                        sa_token.bearer_token.split()[-1]):
        assert secret_text not in text


def test_json_lines_carry_the_same_fields(logged, db, owner, owner_headers):
    client, lines = logged(log_format="json")
    assert client.get("/v1/apps/?search=hidden", headers=owner_headers).status_code == 200
    lines = lines()
    entry = json.loads(lines[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("time"))
    assert entry.pop("duration_ms") > 0
    assert entry == {"level": "INFO", "logger": "phase_lite.access", "event": "request",
                     "client": "127.0.0.1", "method": "GET", "path": "/v1/apps/",
                     "status": 200, "bytes": entry["bytes"], "account": account_of(db, owner)}
    assert "hidden" not in lines[0]


def test_a_path_with_odd_characters_stays_one_token(logged):
    client, lines = logged()
    client.get("/v1/a%20b%22%0A/")  # the path arrives decoded: a space, a quote, a newline
    assert TEXT_LINE.match(lines()[0].rstrip("\n"))["path"] == "/v1/a%20b%22%0A/"


def test_the_client_address_comes_from_a_trusted_proxy_only(logged):
    client, lines = logged(trusted_proxies=("127.0.0.1",))
    client.get("/health/", headers={"X-Forwarded-For": "203.0.113.9"})
    client.get("/health/", headers={"X-Forwarded-For": "not an address"})
    assert [TEXT_LINE.match(line.rstrip("\n"))["client"] for line in lines()] == [
        "203.0.113.9", "127.0.0.1"]


def test_the_access_log_can_be_turned_off(logged):
    client, lines = logged(access_log=False)
    assert client.get("/health/").status_code == 200
    assert lines() == []


@pytest.mark.slow
def test_a_served_process_logs_start_requests_and_stop_as_json(config, owner, db, demo):
    app_row, _ = demo
    server = LiveServer(config.data_dir, {"PHASE_LITE_LOG_FORMAT": "json"}).start()
    try:
        url = f"{server.url}/service/public/v1/secrets/?app_id={app_row['id']}&env=Staging"
        assert requests.get(url, headers=bearer_headers(owner), timeout=10).status_code == 200
    finally:
        server.stop()
    lines = server.log_path.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    # the banner, and the data directory, master key and backup warning lines after it
    assert len(entries) == len([line for line in lines if line.strip()]) - 7
    events = [e.get("event") for e in entries]
    assert events[0] == "start" and events[-1] == "stop"
    read = [e for e in entries if e.get("path") == "/service/public/v1/secrets/"]
    assert [(e["status"], e["account"]) for e in read] == [(200, account_of(db, owner))]
    assert app_row["id"] not in server.log_path.read_text()


@pytest.mark.slow
def test_a_served_process_with_the_access_log_off_logs_no_requests(config, owner):
    server = LiveServer(config.data_dir, {"PHASE_LITE_ACCESS_LOG": "off"}).start()
    try:
        assert requests.get(server.url + "/v1/apps/", timeout=10).status_code == 401
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "/v1/apps/" not in log and '"GET /health/"' not in log
    assert "started on" in log and "stopped" in log


def test_lines_are_written_in_the_background_within_a_second(logged):
    client, lines = logged()
    writer_lines = []
    writer = client.application.extensions["phase_lite_access_log"]
    writer.write = lambda data: writer_lines.append(data)
    client.get("/health/")
    deadline = time.monotonic() + 2
    while not writer_lines and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b'"GET /health/" 200' in b"".join(writer_lines)


def test_an_answer_that_fails_while_streaming_is_logged_as_the_server_sends_it(logged):
    """A body that raises while it is sent, or a header the server cannot send (PEP 3333:
    Latin-1 only, which waitress finds only when writing it), is the 500 the server answers,
    never the status the view chose."""
    client, lines = logged()
    flask_app = client.application

    def broken():
        yield b"part"
        raise RuntimeError("the body failed")

    flask_app.add_url_rule("/v1/broken-stream/", "broken_stream",
                           lambda: Response(broken(), mimetype="text/plain"))
    flask_app.add_url_rule("/v1/unsendable-header/", "unsendable_header",
                           lambda: Response("x", headers={"X-Name": "\u79d8\u5bc6"}))
    streamed = client.get("/v1/broken-stream/")
    with pytest.raises(RuntimeError):
        streamed.get_data()
    streamed.close()  # as the server closes the body it could not send
    with pytest.raises(UnicodeEncodeError):
        client.get("/v1/unsendable-header/")
    assert client.get("/health/").status_code == 200
    assert [(f["path"], f["status"]) for f in
            (TEXT_LINE.match(line.rstrip("\n")) for line in lines())] == [
        ("/v1/broken-stream/", "500"), ("/v1/unsendable-header/", "500"), ("/health/", "200")]
