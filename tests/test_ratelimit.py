"""RATE_LIMIT_DEFAULT: Phase's per-account sliding window, 429 with Retry-After, off when unset."""

import threading

import pytest

import support
from support import bearer_headers
from phase_lite.errors import Throttled
from phase_lite.ratelimit import RateLimiter, account_key


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def refused_wait(limiter, key):
    with pytest.raises(Throttled) as caught:
        limiter.check(key)
    return caught.value


def test_unset_rate_allows_everything(clock):
    limiter = RateLimiter(None, clock)
    for _ in range(10_000):
        limiter.check("user_1")


def test_allows_n_per_period_then_says_how_long_to_wait(clock):
    limiter = RateLimiter((3, 60), clock)
    for step in range(3):
        limiter.check("user_1")
        clock.now += 10
    error = refused_wait(limiter, "user_1")  # oldest request was 30 s ago
    assert error.wait_seconds == 30
    assert error.message == "Request was throttled. Expected available in 30 seconds."


def test_window_slides_and_refusals_are_not_counted(clock):
    limiter = RateLimiter((2, 10), clock)
    limiter.check("sa_1")
    clock.now += 4
    limiter.check("sa_1")
    for _ in range(5):
        refused_wait(limiter, "sa_1")
    clock.now += 6  # the first request leaves the window
    limiter.check("sa_1")
    assert refused_wait(limiter, "sa_1").wait_seconds == 4


@pytest.mark.parametrize("elapsed, expected", [(0.0, 1), (0.2, 1), (0.9999, 1)])
def test_wait_is_rounded_up_and_one_second_is_singular(clock, elapsed, expected):
    limiter = RateLimiter((1, 1), clock)
    limiter.check("anon_127.0.0.1")
    clock.now += elapsed
    error = refused_wait(limiter, "anon_127.0.0.1")
    assert error.wait_seconds == expected
    assert error.message == "Request was throttled. Expected available in 1 second."


def test_accounts_have_separate_counters(clock):
    limiter = RateLimiter((1, 60), clock)
    limiter.check("user_a")
    limiter.check("user_b")
    limiter.check("sa_a")
    refused_wait(limiter, "user_a")


def test_idle_counters_are_swept(clock):
    limiter = RateLimiter((5, 1), clock)
    for number in range(3000):
        limiter.check(f"anon_{number}")
        clock.now += 0.01
    assert len(limiter._history) < 1100  # only keys seen in the last second or sweep period


def test_concurrent_checks_never_exceed_the_limit():
    limiter = RateLimiter((500, 3600))
    accepted = []

    def worker():
        for _ in range(100):
            try:
                limiter.check("user_x")
                accepted.append(1)
            except Throttled:
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(accepted) == 500


def test_account_keys_name_the_account_kind(services, owner, sa_token):
    user = services.auth.authenticate(bearer_headers(owner)["Authorization"])
    sa = services.auth.authenticate(bearer_headers(sa_token)["Authorization"])
    assert account_key(user) == f"user_{user.account_id}"
    assert account_key(sa) == f"sa_{sa.account_id}"
    assert account_key(ip="10.0.0.1") == "anon_10.0.0.1"


# -- through HTTP ----------------------------------------------------------------------------


@pytest.fixture
def limited(config, owner):
    flask_app = support.limited_app(config, (3, 60))
    yield flask_app
    flask_app.extensions["phase_lite"].close()


def test_fourth_request_in_a_minute_is_429_with_retry_after(limited, owner_headers):
    client = limited.test_client()
    for _ in range(3):
        assert client.get("/v1/probe/", headers=owner_headers).status_code == 200
    response = client.get("/service/public/v1/probe/", headers=owner_headers)
    assert response.status_code == 429
    wait = int(response.headers["Retry-After"])
    assert 59 <= wait <= 60
    assert response.get_json() == {
        "error": f"Request was throttled. Expected available in {wait} seconds."}
    assert response.headers["Cache-Control"] == "no-store"


def test_limit_is_per_account_and_shared_across_endpoints(limited, services, owner,
                                                          owner_headers, sa_headers):
    client = limited.test_client()
    second_token = support.user_token(services, "owner@example.com", "second")
    assert client.get("/v1/probe/", headers=owner_headers).status_code == 200
    assert client.get("/v1/other-probe/", headers=owner_headers).status_code == 200
    # Another token of the same user spends the same budget.
    assert client.get("/v1/probe/", headers=bearer_headers(second_token)).status_code == 200
    assert client.get("/v1/other-probe/", headers=bearer_headers(second_token)).status_code == 429
    # A service account has its own.
    for _ in range(3):
        assert client.get("/v1/other-probe/", headers=sa_headers).status_code == 200


def test_authentication_runs_before_the_limit(limited, owner_headers):
    client = limited.test_client()
    for _ in range(3):
        client.get("/v1/probe/", headers=owner_headers)
    assert client.get("/v1/probe/").status_code == 401
    bad = {"Authorization": "Bearer User " + "0" * 64}
    response = client.get("/v1/probe/", headers=bad)
    assert response.status_code == 401
    assert response.get_json() == {"error": "Token expired or deleted"}


def test_failed_authentication_is_not_counted(limited, owner_headers):
    client = limited.test_client()
    for _ in range(10):
        assert client.get("/v1/probe/").status_code == 401
    for _ in range(3):
        assert client.get("/v1/probe/", headers=owner_headers).status_code == 200


def test_no_limit_when_unset(config, owner, owner_headers):
    flask_app = support.limited_app(config, None)
    client = flask_app.test_client()
    assert all(client.get("/v1/probe/", headers=owner_headers).status_code == 200
               for _ in range(200))
    flask_app.extensions["phase_lite"].close()


def test_scope_errors_come_before_the_limit(limited, demo, owner_headers):
    app_row, _ = demo
    client = limited.test_client()
    for _ in range(3):
        assert client.get("/v1/apps/", headers=owner_headers).status_code == 200
    unknown = client.get("/v1/secrets/?app_id=nope&env=Development", headers=owner_headers)
    assert (unknown.status_code, unknown.get_json()) == (
        404, {"error": "App with ID nope not found"})
    over = client.get(f"/v1/secrets/?app_id={app_row['id']}&env=Development",
                      headers=owner_headers)
    assert over.status_code == 429


def test_every_surface_shares_one_budget(limited, demo, owner_headers):
    app_row, _ = demo
    client = limited.test_client()
    assert client.get(f"/v1/secrets/?app_id={app_row['id']}&env=Development",
                      headers=owner_headers).status_code == 200
    assert client.get("/v1/apps/", headers=owner_headers).status_code == 200
    assert client.get("/service/secrets/tokens/", headers=owner_headers).status_code == 200
    for path in (f"/v1/secrets/?app_id={app_row['id']}&env=Development", "/v1/apps/",
                 "/service/secrets/tokens/", "/service/secrets/"):
        response = client.get(path, headers=owner_headers)
        assert response.status_code == 429, path
        assert response.get_json()["error"].startswith("Request was throttled. Expected")
        assert response.headers["Retry-After"].isdigit()
