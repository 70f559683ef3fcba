"""Deployment files: the systemd unit verifies and is hardened; LICENSE matches setup.cfg."""

import configparser
import os
import shutil
import subprocess
import sys

import pytest

from live import REPO
from phase_lite import __version__

UNIT = REPO / "deploy" / "phase-lite.service"
INSTALLED_COMMAND = "/opt/phase-lite/bin/phase-lite"


def unit_options() -> dict:
    """{(section, key): [values]} of the unit (keys may repeat)."""
    options, section = {}, None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        options.setdefault((section, key), []).append(value)
    return options


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if sys.platform != "linux":
            pytest.skip("systemd exists on Linux only")
        pytest.fail("systemd-analyze is missing: install Debian's systemd package "
                    "('make test' does)")
    # verify checks that ExecStart exists: point it at this checkout's installed command.
    command = os.path.join(os.path.dirname(sys.executable), "phase-lite")
    assert os.access(command, os.X_OK), command
    rendered = tmp_path / UNIT.name
    rendered.write_text(UNIT.read_text().replace(INSTALLED_COMMAND, command))
    result = subprocess.run([analyze, "verify", str(rendered)], capture_output=True, text=True,
                            timeout=120)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_unit_is_hardened_and_writes_only_its_data_directory():
    options = unit_options()
    service = {key: values for (section, key), values in options.items() if section == "Service"}
    assert service["User"] == ["phase-lite"] or service.get("DynamicUser") == ["yes"]
    assert service["ProtectSystem"] == ["strict"]
    assert service["NoNewPrivileges"] == ["yes"]
    assert service["CapabilityBoundingSet"] == [""]
    data_dir = [v.split("=", 1)[1] for v in service["Environment"]
                if v.startswith("PHASE_LITE_DATA_DIR=")]
    assert data_dir == service["ReadWritePaths"] == ["/var/lib/phase-lite"]
    assert service["StateDirectory"] == ["phase-lite"]
    assert service["ExecStart"] == [f"{INSTALLED_COMMAND} serve"]
    assert service["KillSignal"] == ["SIGTERM"]


def test_the_license_file_is_the_one_setup_cfg_declares():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    assert setup["metadata"]["license"] == "MIT"
    assert (REPO / "LICENSE").read_text().splitlines()[0] == "MIT License"


def test_the_changelog_lists_this_version():
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{__version__}]" in changelog


@pytest.mark.slow
def test_the_editable_install_prints_no_warning(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # As 'make' does: the newest pip shows the build backend's warnings.
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade",
                    "pip"], check=True, capture_output=True, timeout=600)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                             "--no-deps", "-e", str(REPO)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "BuildBackendWarning" not in output and "Editable installation" not in output


def make(*args, **kwargs):
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, **kwargs)


def test_make_run_installs_only_what_serving_needs(tmp_path):
    # -n prints what make would run for a fresh venv, running nothing.
    planned = make("-n", "run", f"VENV={tmp_path / 'venv'}")
    assert planned.returncode == 0, planned.stderr
    installs = [line for line in planned.stdout.splitlines() if " install " in line]
    assert installs[-1].endswith("pip install --quiet -e .")
    assert "[test]" not in planned.stdout and "playwright" not in planned.stdout
    tests = make("-n", "test", f"VENV={tmp_path / 'venv'}").stdout
    assert "pip install --quiet -e '.[test]'" in tests


def test_make_help_lists_every_task_with_its_comment():
    listed = make("help")
    assert listed.returncode == 0, listed.stderr
    phony = next(line for line in (REPO / "Makefile").read_text().splitlines()
                 if line.startswith(".PHONY:")).split()[1:]
    names = [line.split()[1] for line in listed.stdout.splitlines()]
    assert sorted(names) == sorted(phony)
    run_line = next(line for line in listed.stdout.splitlines() if line.split()[1] == "run")
    assert "owner.token" in run_line


def test_every_file_the_package_reads_is_in_its_package_data():
    """A non-editable install (the unit's venv, the container image) gets the templates,
    static files and JSON: each non-Python file of the package matches a package_data
    pattern as setuptools reads setup.cfg."""
    from setuptools.config.setupcfg import read_configuration

    patterns = read_configuration(REPO / "setup.cfg")["options"]["package_data"]["phase_lite"]
    package = REPO / "phase_lite"
    matched = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    data_files = {path for path in package.rglob("*") if path.is_file()
                  and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts}
    assert data_files and data_files - matched == set()
