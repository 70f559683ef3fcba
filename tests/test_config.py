"""Settings: defaults, validation, and key material without defaults."""

import os
from pathlib import Path

import pytest

from phase_lite import config as config_module
from phase_lite.config import ConfigError, load_config, parse_rate, unknown_settings


def test_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config({"HOME": str(tmp_path / "home")})
    data_dir = tmp_path / "home" / ".local" / "share" / "phase-lite"
    assert config.data_dir == data_dir
    assert config.database == data_dir / "phase_lite.sqlite3"
    assert config.master_key_file == data_dir / "master.key"
    assert config.master_key_env is None
    assert config.listen == "127.0.0.1:8080"
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.threads == 4
    assert config.max_body_bytes == 5 * 1024 * 1024
    assert config.rate_limit is None


def test_the_default_data_directory_does_not_follow_the_working_directory(tmp_path,
                                                                          monkeypatch):
    env = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    seen = set()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        seen.add(load_config(env).data_dir)
    assert seen == {tmp_path / "xdg" / "phase-lite"}
    # XDG's rule: a relative XDG_DATA_HOME is ignored; PHASE_LITE_DATA_DIR wins over both.
    relative = load_config({"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": "rel"})
    assert relative.data_dir == tmp_path / "home" / ".local" / "share" / "phase-lite"
    assert load_config(env | {"PHASE_LITE_DATA_DIR": str(tmp_path / "d")}).data_dir == (
        tmp_path / "d")


def test_the_tests_never_reach_the_real_home():
    from live import TEST_XDG_DATA_HOME

    env = {k: v for k, v in os.environ.items() if k != "PHASE_LITE_DATA_DIR"}
    assert load_config(env).data_dir == TEST_XDG_DATA_HOME / "phase-lite"


def test_settings_are_read(tmp_path):
    config = load_config({
        "PHASE_LITE_DATA_DIR": str(tmp_path),
        "PHASE_LITE_DATABASE": str(tmp_path / "x.db"),
        "PHASE_LITE_MASTER_KEY_FILE": str(tmp_path / "k"),
        "PHASE_LITE_LISTEN": "0.0.0.0:9000",
        "PHASE_LITE_THREADS": "8",
        "PHASE_LITE_MAX_BODY_BYTES": "1000",
        "RATE_LIMIT_DEFAULT": "120/minute",
    })
    assert config.database == Path(tmp_path / "x.db")
    assert config.master_key_file == Path(tmp_path / "k")
    assert (config.listen, config.threads, config.max_body_bytes) == ("0.0.0.0:9000", 8, 1000)
    assert config.rate_limit == (120, 60)


@pytest.mark.parametrize("name, value", [
    ("PHASE_LITE_THREADS", "many"),
    ("PHASE_LITE_THREADS", "0"),
    ("PHASE_LITE_MAX_BODY_BYTES", "-5"),
    ("PHASE_LITE_LISTEN", "8080"),
    ("PHASE_LITE_LISTEN", "host:port"),
    ("RATE_LIMIT_DEFAULT", "lots"),
    ("RATE_LIMIT_DEFAULT", "0/minute"),
    ("PHASE_LITE_TRUSTED_PROXIES", "not-an-ip"),
    ("PHASE_LITE_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.0/33"),
    ("PHASE_LITE_TRUSTED_PROXIES", "127.0.0.1,localhost"),
])
def test_bad_settings_name_the_variable(tmp_path, name, value):
    with pytest.raises(ConfigError, match=f"^{name}: "):
        load_config({"PHASE_LITE_DATA_DIR": str(tmp_path), name: value})


@pytest.mark.parametrize("text, expected", [
    ("10/second", (10, 1)), ("10/s", (10, 1)), ("100/minute", (100, 60)), ("10/min", (10, 60)),
    ("5/hour", (5, 3600)), ("7/day", (7, 86400)), (" 3 / M ", (3, 60)),
])
def test_rates_use_phase_periods(text, expected):
    assert parse_rate(text) == expected


def test_master_key_lines_name_the_setting_and_not_the_key(tmp_path):
    config = load_config({"PHASE_LITE_DATA_DIR": str(tmp_path)})
    with pytest.raises(ConfigError) as caught:
        config.read_master_key_lines()
    assert str(caught.value).startswith("PHASE_LITE_MASTER_KEY_FILE: no master key")
    config.master_key_file.write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        config.read_master_key_lines()
    config.master_key_file.write_text("current\nprevious\n")
    assert config.read_master_key_lines() == ("PHASE_LITE_MASTER_KEY_FILE",
                                              ["current", "previous"])
    env = load_config({"PHASE_LITE_DATA_DIR": str(tmp_path),
                       "PHASE_LITE_MASTER_KEY": " QUJDREVGR0g= \n"})
    assert env.read_master_key_lines() == ("PHASE_LITE_MASTER_KEY", ["QUJDREVGR0g="])
    assert "QUJDREVGR0g" not in repr(env)


def test_a_database_url_is_named_without_its_password(tmp_path):
    config = load_config({"PHASE_LITE_DATA_DIR": str(tmp_path),
                          "PHASE_LITE_DATABASE_URL": "postgresql://phase:s3cret@db:5433/phase"})
    assert config.database_name == "postgresql://db:5433/phase"
    assert "s3cret" not in repr(config)


def test_trusted_proxies_are_addresses_or_networks(tmp_path):
    config = load_config({"PHASE_LITE_DATA_DIR": str(tmp_path),
                          "PHASE_LITE_TRUSTED_PROXIES": " 127.0.0.1, 10.0.0.0/8 ,::1,"})
    assert config.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    with pytest.raises(ConfigError, match="entry 2 is not an IP address or network"):
        load_config({"PHASE_LITE_TRUSTED_PROXIES": "127.0.0.1,not-an-ip"})


class ReadNames(dict):
    """An environment that remembers every name read from it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = set()

    def get(self, name, default=None):
        self.read.add(name)
        return super().get(name, default)


def test_the_list_of_settings_is_what_load_config_reads(tmp_path):
    environ = ReadNames({"PHASE_LITE_DATA_DIR": str(tmp_path)})
    load_config(environ)
    # The provider's other settings are read only once PHASE_LITE_OIDC_ISSUER is set.
    with_issuer = {name for name in config_module.SETTINGS
                   if name.startswith("PHASE_LITE_OIDC_") and name != "PHASE_LITE_OIDC_ISSUER"}
    assert environ.read == set(config_module.SETTINGS) - with_issuer


@pytest.mark.parametrize("name, nearest", [
    ("PHASE_LITE_DATADIR", "PHASE_LITE_DATA_DIR"),
    ("PHASE_LITE_TRUSTED_PROXY", "PHASE_LITE_TRUSTED_PROXIES"),
    ("PHASE_LITE_THREAD", "PHASE_LITE_THREADS"),
    ("PHASE_LITE_MASTERKEY_FILE", "PHASE_LITE_MASTER_KEY_FILE"),
    ("PHASE_LITE_PUBLICURL", "PHASE_LITE_PUBLIC_URL"),
])
def test_an_unknown_setting_is_named_with_the_nearest_one(name, nearest):
    assert unknown_settings({name: "x", "PHASE_LITE_THREADS": "2", "HOME": "/root"}) == [
        f"{name} is not a phase_lite setting and is ignored; did you mean {nearest}?"]


def test_known_settings_and_the_test_suites_variables_are_not_warned_about():
    environ = {name: "x" for name in config_module.SETTINGS}
    environ.update(PHASE_LITE_TEST_CHROMIUM="/usr/bin/chromium", _PHASE_LITE_COMPLETE="bash")
    assert unknown_settings(environ) == []
    assert unknown_settings({"PHASE_LITE_ZZZZZZZZ": "1"}) == [
        "PHASE_LITE_ZZZZZZZZ is not a phase_lite setting and is ignored"]
