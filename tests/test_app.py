"""The app factory, start-up checks, the root/health endpoints and the one error shape."""

import base64

import pytest

from phase_lite import __version__, keyring
from phase_lite.app import create_app, init_data_dir
from phase_lite.config import ConfigError, load_config

ROOT_MESSAGE = (
    "API is alive. Please see https://docs.phase.dev/public-api for documentation on available "
    "endpoints."
)


@pytest.mark.parametrize("path", ["/", "/public/", "/service/public/", "/service/", "/service"])
def test_root_answers_as_phase(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json() == {"message": ROOT_MESSAGE, "status": "ok"}


@pytest.mark.parametrize("path", ["/health/", "/public/health/", "/service/public/health/",
                                  "/service/health/"])
def test_health_reports_version(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.get_json() == {"status": "alive", "version": __version__}


@pytest.mark.parametrize("path", ["/health", "/healthz/", "/health/foo", "/api/health/",
                                  "/services/health/", "/serviceabc/", "/no/such/endpoint/"])
def test_unknown_paths_are_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.content_type == "application/json"
    assert response.get_json() == {"error": "Not found."}


def test_wrong_method_is_json_405(client):
    response = client.post("/health/")
    assert response.status_code == 405
    assert response.get_json() == {"error": 'Method "POST" not allowed.'}


def test_oversized_body_is_json_413(config, owner):
    config.max_body_bytes = 1024
    app = create_app(config)
    response = app.test_client().post("/health/", data=b"x" * 4096,
                                      headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.get_json() == {"error": "Request body is too large."}
    app.extensions["phase_lite"].close()


def test_unexpected_exception_is_json_500_without_details(app):
    @app.route("/boom/")
    def boom():
        raise RuntimeError("secret-value-that-must-not-leak")

    response = app.test_client().get("/boom/")
    assert response.status_code == 500
    assert response.get_json() == {"error": "Internal server error."}
    assert b"secret-value" not in response.data


def test_every_response_has_security_headers(client):
    for path in ("/", "/health/", "/nope/"):
        response = client.get(path)
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_start_up_refuses_a_missing_master_key(config, owner):
    config.master_key_file.unlink()
    with pytest.raises(ConfigError, match="^PHASE_LITE_MASTER_KEY_FILE: no master key"):
        create_app(config)


@pytest.mark.parametrize("content", [b"", b"not base64!\n", base64.b64encode(b"short") + b"\n"])
def test_start_up_refuses_a_malformed_master_key(config, owner, content):
    config.master_key_file.write_bytes(content)
    with pytest.raises(ConfigError, match="^PHASE_LITE_MASTER_KEY_FILE: "):
        create_app(config)


def test_start_up_refuses_the_wrong_master_key(config, owner):
    other = keyring.encode_master_key(keyring.generate_master_key())
    wrong = load_config({"PHASE_LITE_DATA_DIR": str(config.data_dir),
                         "PHASE_LITE_MASTER_KEY": other})
    with pytest.raises(ConfigError, match="does not match the database"):
        create_app(wrong)


def test_master_key_from_environment(data_dir):
    key = keyring.encode_master_key(keyring.generate_master_key())
    config = load_config({"PHASE_LITE_DATA_DIR": str(data_dir), "PHASE_LITE_MASTER_KEY": key})
    assert init_data_dir(config, "o@example.com") is not None
    assert not config.master_key_file.exists()
    app = create_app(config)
    assert app.test_client().get("/health/").status_code == 200
    app.extensions["phase_lite"].close()


def test_start_up_refuses_an_uninitialised_database(config):
    with pytest.raises(ConfigError, match="^PHASE_LITE_MASTER_KEY_FILE: no master key"):
        create_app(config)
