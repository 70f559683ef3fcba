"""GET /metrics: Prometheus' text format, read back with prometheus-client's own parser."""

import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from live import LiveServer, database_env
from support import bearer_headers
from phase_lite.config import load_config

pytestmark = pytest.mark.both_backends


def scrape(client, headers=None) -> dict:
    """{sample name: {frozenset of label items: value}} of a /metrics answer."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.data
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples, name, **labels):
    return samples[name][frozenset(labels.items())]


def test_requests_are_counted_by_route_template_method_and_status(client, demo, sa_headers,
                                                                  owner_headers):
    app_row, envs = demo
    secrets_url = f"/service/public/v1/secrets/?app_id={app_row['id']}&env=Development"
    for _ in range(3):
        assert client.get(secrets_url, headers=sa_headers).status_code == 200  # fast path
    assert client.get(f"/v1/apps/{app_row['id']}/", headers=owner_headers).status_code == 200
    assert client.get("/v1/apps/0/", headers=owner_headers).status_code == 404
    assert client.delete("/v1/secrets/", headers={}).status_code == 401
    assert client.get("/v1/no-such-route/").status_code == 404
    assert client.open("/health/", method="BREW").status_code == 405

    samples = scrape(client)
    counted = samples["phase_lite_http_requests_total"]
    assert value(samples, "phase_lite_http_requests_total",
                 route="/v1/secrets/", method="GET", status="200") == 3
    assert value(samples, "phase_lite_http_requests_total",
                 route="/v1/apps/<app_id>/", method="GET", status="200") == 1
    assert value(samples, "phase_lite_http_requests_total",
                 route="/v1/apps/<app_id>/", method="GET", status="404") == 1
    assert value(samples, "phase_lite_http_requests_total",
                 route="/v1/secrets/", method="DELETE", status="401") == 1
    assert value(samples, "phase_lite_http_requests_total",
                 route="unmatched", method="GET", status="404") == 1
    assert value(samples, "phase_lite_http_requests_total",
                 route="unmatched", method="OTHER", status="405") == 1  # no rule allows it
    assert sum(counted.values()) == 8
    assert value(samples, "phase_lite_http_request_duration_seconds_count",
                 route="/v1/secrets/", method="GET") == 3
    assert value(samples, "phase_lite_http_request_duration_seconds_bucket",
                 route="/v1/secrets/", method="GET", le="+Inf") == 3
    assert value(samples, "phase_lite_http_request_duration_seconds_sum",
                 route="/v1/secrets/", method="GET") > 0


def test_latency_buckets_count_each_request_once_at_the_first_bound_it_does_not_exceed(
        app_with):
    flask_app = app_with(access_log=False)  # the recorder still counts for the metrics
    figures = flask_app.extensions["phase_lite_metrics"].requests
    figures.observe_all([("/v1/secrets/", "GET", 200, seconds)
                         for seconds in (0.0005, 0.0006, 0.001, 7.5, 20.0)])
    samples = scrape(flask_app.test_client())
    buckets = {dict(labels)["le"]: count for labels, count in
               samples["phase_lite_http_request_duration_seconds_bucket"].items()
               if dict(labels)["route"] == "/v1/secrets/"}
    assert (buckets["0.0005"], buckets["0.001"], buckets["0.0025"], buckets["5.0"],
            buckets["10.0"], buckets["+Inf"]) == (1, 3, 3, 3, 4, 5)
    assert value(samples, "phase_lite_http_request_duration_seconds_sum",
                 route="/v1/secrets/", method="GET") == pytest.approx(27.5021)
    assert value(samples, "phase_lite_http_requests_total",
                 route="/v1/secrets/", method="GET", status="200") == 5
    again = scrape(flask_app.test_client())  # a scrape is counted once it is answered
    assert value(again, "phase_lite_http_requests_total",
                 route="/metrics", method="GET", status="200") == 1


def test_a_scrape_counts_every_request_while_standard_error_is_blocked(app_with):
    flask_app = app_with()
    writer = flask_app.extensions["phase_lite_access_log"]
    blocked, release = threading.Event(), threading.Event()

    def stuck(data):
        blocked.set()
        release.wait(30)

    writer.write = stuck
    client = flask_app.test_client()
    try:
        assert client.get("/health/").status_code == 200
        assert blocked.wait(5)  # the access log's thread is now stuck writing that line
        assert client.get("/health/").status_code == 200
        started = time.monotonic()
        samples = scrape(client)
        assert time.monotonic() - started < 5
    finally:
        release.set()
    assert value(samples, "phase_lite_http_requests_total",
                 route="/health/", method="GET", status="200") == 2


def test_state_figures_cache_transactions_and_audit_buffer(client, services, demo, sa_headers,
                                                           make_service_token):
    app_row, envs = demo
    url = f"/v1/secrets/?app_id={app_row['id']}&env=Development"
    assert client.post(url, headers=sa_headers, json={"secrets": [
        {"key": "A", "value": "1"}, {"key": "B", "value": "2"}]}).status_code == 200
    before = scrape(client)
    for _ in range(4):
        assert client.get(url, headers=sa_headers).status_code == 200
    samples = scrape(client)

    assert samples["phase_lite_apps"][frozenset()] == 1
    assert samples["phase_lite_environments"][frozenset()] == 3
    assert samples["phase_lite_secrets"][frozenset()] == 2
    assert value(samples, "phase_lite_tokens", kind="user") == 1
    assert value(samples, "phase_lite_tokens", kind="service") == 1
    waiting = len(services.read_log)
    assert samples["phase_lite_audit_read_buffer_events"][frozenset()] == waiting
    assert samples["phase_lite_write_transaction_duration_seconds_count"][frozenset()] >= 1
    hits = value(samples, "phase_lite_cache_hits_total", cache="answers") - value(
        before, "phase_lite_cache_hits_total", cache="answers")
    assert hits >= 3  # the first read after the write builds the answer; the others reuse it
    assert value(samples, "phase_lite_cache_misses_total", cache="principals") >= 1
    assert "process_resident_memory_bytes" in samples


def test_no_label_or_value_comes_from_user_data(client, services, make_app, owner,
                                                owner_headers):
    app_row, envs = make_app("SecretProjectName", ["HiddenEnvName"])
    url = f"/v1/secrets/?app_id={app_row['id']}&env=HiddenEnvName"
    assert client.post(url, headers=owner_headers, json={"secrets": [
        {"key": "PRIVATE_KEY_NAME", "value": "private-value", "path": "/private/path"}]}
    ).status_code == 200
    client.get(url + "&key=PRIVATE_KEY_NAME", headers=owner_headers)
    client.get("/v1/private-route-name/")
    client.get(f"/v1/apps/{app_row['id']}/", headers=owner_headers)
    document = client.get("/metrics").get_data(as_text=True)
    for text in ("SecretProjectName", "HiddenEnvName", "PRIVATE_KEY_NAME", "private",
                 app_row["id"], envs["HiddenEnvName"]["id"], owner.bearer_token.split()[-1]):
        assert text not in document


def test_metrics_can_require_a_bearer_token(app_with):
    client = app_with(metrics_token="scrape-me").test_client()
    for headers, message in (({}, "Authentication credentials were not provided."),
                             ({"Authorization": "Bearer wrong"}, "Invalid metrics token."),
                             ({"Authorization": "Basic scrape-me"},
                              "Authentication credentials were not provided.")):
        response = client.get("/metrics", headers=headers)
        assert (response.status_code, response.get_json()) == (401, {"error": message})
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "phase_lite_apps" in scrape(client, {"Authorization": "Bearer scrape-me"})


def test_metrics_can_be_turned_off(app_with):
    client = app_with(metrics=False).test_client()
    response = client.get("/metrics")
    assert (response.status_code, response.get_json()) == (404, {"error": "Not found."})


def test_only_get_and_head(client):
    response = client.post("/metrics")
    assert (response.status_code, response.get_json()) == (
        405, {"error": 'Method "POST" not allowed.'})


@pytest.mark.slow
def test_a_served_process_counts_its_fast_path_reads(config, owner, demo):
    app_row, _ = demo
    server = LiveServer(config.data_dir, database_env(config)).start()
    try:
        url = f"{server.url}/service/public/v1/secrets/?app_id={app_row['id']}&env=Staging"
        for _ in range(2):
            assert requests.get(url, headers=bearer_headers(owner), timeout=10).ok
        document = requests.get(server.url + "/metrics", timeout=10).text
    finally:
        server.stop()
    families = {f.name: f for f in text_string_to_metric_families(document)}
    reads = [s for s in families["phase_lite_http_requests"].samples
             if s.name.endswith("_total") and s.labels["route"] == "/v1/secrets/"]
    assert [(s.labels["status"], s.value) for s in reads] == [("200", 2.0)]


def test_the_settings_are_read_from_the_environment(tmp_path):
    base = {"PHASE_LITE_DATA_DIR": str(tmp_path)}
    assert (load_config(base).metrics, load_config(base).metrics_token) == (True, None)
    config = load_config(base | {"PHASE_LITE_METRICS": "Off", "PHASE_LITE_METRICS_TOKEN": " t "})
    assert (config.metrics, config.metrics_token) == (False, "t")
    assert "metrics_token" not in repr(config)
