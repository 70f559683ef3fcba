"""The access log: one line per request with its fields, never a query value or a secret."""

import dataclasses
import json
import logging

import pytest
import requests

from conftest import LiveServer, bearer_headers
from phase_lite.access_log import JsonFormatter, TextFormatter
from phase_lite.app import create_app

ACCESS = "phase_lite.access"


def account_of(db, issued):
    return db.scalar("SELECT coalesce(user_id, service_account_id) FROM tokens WHERE id = ?",
                     (issued.id,))


@pytest.fixture
def access_records(caplog):
    caplog.set_level(logging.INFO, logger=ACCESS)

    def records():
        return [r for r in caplog.records if r.name == ACCESS]

    return records


def test_one_line_per_request_with_its_fields(client, db, demo, sa_token, sa_headers,
                                              access_records):
    app_row, _ = demo
    created = client.post(f"/v1/secrets/?app_id={app_row['id']}&env=Development",
                          headers=sa_headers, json={"secrets": [{"key": "DB_URL", "value": "x"}]})
    assert created.status_code == 200
    query = f"app_id={app_row['id']}&env=Development&key=DB_URL"
    read = client.get(f"/service/public/v1/secrets/?{query}", headers=sa_headers)  # fast path
    assert read.status_code == 200
    missing = client.get("/v1/nothing/?token=abc")
    assert missing.status_code == 404

    records = access_records()
    assert len(records) == 3
    fields = [r.args for r in records]
    assert [(f["method"], f["path"], f["status"]) for f in fields] == [
        ("POST", "/v1/secrets/", 200),
        ("GET", "/service/public/v1/secrets/", 200),
        ("GET", "/v1/nothing/", 404),
    ]
    assert fields[1]["bytes"] == len(read.data)
    assert fields[2]["bytes"] == len(missing.data)
    assert [f["account"] for f in fields] == [account_of(db, sa_token)] * 2 + ["-"]
    assert all(f["client"] == "127.0.0.1" and f["duration_ms"] > 0 for f in fields)
    text = "\n".join(TextFormatter().format(r) for r in records)
    for secret_text in (app_row["id"], "DB_URL", "Development", "abc", sa_token.bearer_token):
        assert secret_text not in text
    line = TextFormatter().format(records[1])
    assert line.endswith(f'INFO phase_lite.access 127.0.0.1 "GET /service/public/v1/secrets/" '
                         f'200 {len(read.data)} {fields[1]["duration_ms"]:.1f}ms '
                         f'account={account_of(db, sa_token)}')


def test_json_lines_carry_the_same_fields(client, db, owner, owner_headers, access_records):
    assert client.get("/v1/apps/?search=hidden", headers=owner_headers).status_code == 200
    entry = json.loads(JsonFormatter().format(access_records()[0]))
    assert entry.pop("time").endswith("Z")
    assert entry.pop("duration_ms") > 0
    assert entry == {"level": "INFO", "logger": ACCESS, "event": "request",
                     "client": "127.0.0.1", "method": "GET", "path": "/v1/apps/",
                     "status": 200, "bytes": entry["bytes"], "account": account_of(db, owner)}


def test_a_path_with_odd_characters_stays_one_token(client, access_records):
    client.get("/v1/a%20b%22%0A/")  # the path arrives decoded: a space, a quote, a newline
    assert access_records()[0].args["path"] == "/v1/a%20b%22%0A/"


def test_the_access_log_can_be_turned_off(config, owner, access_records):
    app = create_app(dataclasses.replace(config, access_log=False))
    try:
        assert app.test_client().get("/health/").status_code == 200
    finally:
        app.extensions["phase_lite"].close()
    assert access_records() == []


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
    assert len(entries) == len([line for line in lines if line.strip()]) - 4  # the banner
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
