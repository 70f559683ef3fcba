"""The container image: the Containerfile built with podman, then started from its own files.

On the machines this suite runs on, podman builds images but cannot start a container (crun and
runc stop at setrlimit), and no container registry may be reachable. So, as root:

1. the base is the Containerfile's default (``ARG BASE``) when it can be pulled, else Debian
   bookworm with Python made from Debian's own packages (mmdebstrap, then ``podman import``);
2. the image is built from the Containerfile with podman (vfs storage in a temporary
   directory; RUN steps isolated by chroot);
3. its filesystem is exported, and the image's own entry point and command run in it by chroot
   in a private mount namespace, the way compose.yaml runs the service: the image's user,
   environment and working directory; the root read-only; the named volume, the master key
   secret and the tmpfs where compose.yaml puts them;
4. /health/, the image's own health check and a Phase CLI round trip are checked from outside.

Nothing here is a ``docker run`` or ``docker compose up``: the README says what is and is not run.
"""

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

from live import REPO, free_port
from support import PHASE

pytestmark = [pytest.mark.slow, pytest.mark.clients]

CONTAINERFILE = REPO / "Containerfile"
COMPOSE = REPO / "compose.yaml"
SERVICE = "phase-lite"
IMAGE = "localhost/phase-lite:test"
LOCAL_BASE = "localhost/phase-lite-base:bookworm"
MAX_IMAGE_MB = 200  # python:3.11-slim-bookworm alone is about 130 MB
TIMEOUT = 60  # seconds, for each command run in the image and each Phase CLI call

# The Debian base, when no base image can be pulled: bookworm's Python and venv, the user
# tools the Containerfile runs, no documentation. It is cached between runs (rebuilt weekly).
BASE_CACHE = Path("/var/cache/phase-lite-tests")
BASE_MAX_AGE = 7 * 24 * 3600
DEBIAN_MIRRORS = ["deb http://deb.debian.org/debian bookworm main",
                  "deb http://deb.debian.org/debian-security bookworm-security main"]
MMDEBSTRAP = [
    "mmdebstrap", "--format=tar", "--variant=essential", "--include=python3,python3-venv,passwd",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    *(f"--dpkgopt=path-{rule}" for rule in (
        "exclude=/usr/share/man/*", "exclude=/usr/share/info/*", "exclude=/usr/share/locale/*",
        "include=/usr/share/locale/locale.alias", "exclude=/usr/share/doc/*",
        "include=/usr/share/doc/*/copyright")),
]
# pip in the build trusts what this machine trusts (its CA bundle, which may hold a
# TLS-inspecting proxy's certificate): the bundle goes into the base, PIP_CERT names it.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

# The exec step inside the mount namespace: into the image's root, then its user, then its
# entry point (os.setuid drops every capability, as a container's non-root user has none).
RUNNER = """
import json, os, sys
spec = json.loads(sys.argv[1])
os.chroot(spec["root"])
os.chdir(spec["workdir"])
os.setgroups([])
os.setgid(spec["gid"])
os.setuid(spec["uid"])
os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
"""

DEVICES = ("null", "zero", "full", "random", "urandom")


def image_config_default_base() -> str:
    match = re.search(r"^ARG BASE=(\S+)$", CONTAINERFILE.read_text(), re.MULTILINE)
    assert match, "the Containerfile declares ARG BASE=<default image>"
    return match.group(1)


@dataclass
class Podman:
    """podman with its own storage (vfs) under ``home``: nothing outside it is touched."""
    home: Path

    def __call__(self, *args, timeout=900, check=True):
        env = {**os.environ, "TMPDIR": str(self.home / "tmp")}
        result = subprocess.run(
            ["podman", "--root", str(self.home / "storage"), "--runroot", str(self.home / "run"),
             "--storage-driver", "vfs", "--events-backend", "none", *args],
            capture_output=True, text=True, timeout=timeout, env=env)
        if check:
            assert result.returncode == 0, f"podman {args[0]}: {result.stderr[-3000:]}"
        return result


def debian_base_tarball(tmp) -> Path:
    """A bookworm root filesystem with Python, from the cache when it is fresh."""
    command = MMDEBSTRAP + (
        [f"--customize-hook=mkdir -p \"$1{HOST_CA_BUNDLE.parent}\"",
         f"--customize-hook=upload {HOST_CA_BUNDLE} {HOST_CA_BUNDLE}"]
        if HOST_CA_BUNDLE.is_file() else [])
    key = hashlib.sha256(json.dumps([command, DEBIAN_MIRRORS]).encode()
                         + (HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.is_file() else b""))
    cached = BASE_CACHE / f"bookworm-python-{key.hexdigest()[:16]}.tar"
    if cached.exists() and time.time() - cached.stat().st_mtime < BASE_MAX_AGE:
        return cached
    BASE_CACHE.mkdir(parents=True, exist_ok=True)
    partial = BASE_CACHE / f".{cached.name}.{os.getpid()}"
    result = subprocess.run([*command, "bookworm", str(partial), *DEBIAN_MIRRORS],
                            capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TMPDIR": str(tmp)})
    assert result.returncode == 0, f"mmdebstrap: {result.stderr[-3000:]}"
    for old in BASE_CACHE.glob("bookworm-python-*.tar"):
        old.unlink()
    partial.rename(cached)
    return cached


def base_image(podman, tmp) -> str:
    """The Containerfile's default base if it can be pulled, else one from Debian packages."""
    default = image_config_default_base()
    if podman("pull", "--quiet", default, check=False, timeout=600).returncode == 0:
        return default
    changes = (["--change", f"ENV PIP_CERT={HOST_CA_BUNDLE}"] if HOST_CA_BUNDLE.is_file()
               else [])
    podman("import", *changes, str(debian_base_tarball(tmp)), LOCAL_BASE)
    return LOCAL_BASE


@dataclass
class Image:
    """The built image: its configuration (``podman image inspect``) and exported files."""
    root: Path
    config: dict
    size: int
    base: str
    timings: dict = field(default_factory=dict)

    @property
    def env(self) -> dict:
        return dict(item.split("=", 1) for item in self.config["Env"])

    def user(self) -> tuple[int, int]:
        """The image's USER as (uid, gid), names looked up in the image's /etc/passwd."""
        name, _, group = (self.config.get("User") or "0").partition(":")
        passwd = [line.split(":") for line in (self.root / "etc/passwd").read_text().splitlines()]
        groups = [line.split(":") for line in (self.root / "etc/group").read_text().splitlines()]
        entry = next((row for row in passwd if name in (row[0], row[2])), None)
        uid = int(entry[2]) if entry else int(name)
        if group:
            row = next((row for row in groups if group in (row[0], row[2])), None)
            gid = int(row[2]) if row else int(group)
        else:
            gid = int(entry[3]) if entry else 0
        return uid, gid

    def home(self, uid) -> str:
        for line in (self.root / "etc/passwd").read_text().splitlines():
            row = line.split(":")
            if int(row[2]) == uid:
                return row[5]
        return "/"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("building and chrooting into the image needs root on Linux")
    missing = [tool for tool in ("podman", "mmdebstrap", "unshare", "mount")
               if shutil.which(tool) is None]
    assert not missing, f"missing {missing}: 'make container-tools' installs them"
    home = tmp_path_factory.mktemp("podman")
    (home / "tmp").mkdir()
    podman = Podman(home)
    timings, started = {}, time.monotonic()
    try:
        base = base_image(podman, home / "tmp")
        timings["base"] = time.monotonic() - started
        podman("build", "--layers=false", "--isolation", "chroot", "--format", "docker",
               "--build-arg",
               f"BASE={base}", "--tag", IMAGE, "--file", str(CONTAINERFILE), str(REPO))
        timings["build"] = time.monotonic() - started - timings["base"]
        [config] = json.loads(podman("image", "inspect", IMAGE).stdout)
        container = podman("create", IMAGE).stdout.strip()
        exported = home / "rootfs.tar"
        podman("export", "--output", str(exported), container)
        podman("rm", container)
        root = home / "rootfs"
        root.mkdir()
        subprocess.run(["tar", "--extract", "--numeric-owner", "--file", str(exported),
                        "--directory", str(root)], check=True, timeout=600)
        exported.unlink()
        timings["export"] = time.monotonic() - started - timings["base"] - timings["build"]
        # podman shows a docker-format image's HEALTHCHECK beside its Config, not in it.
        settings = {**config["Config"], "Healthcheck": config["Config"].get("Healthcheck")
                    or config.get("Healthcheck")}
        yield Image(root, settings, config["Size"], base, timings)
    finally:
        podman("rm", "--all", "--force", check=False)
        podman("rmi", "--all", "--force", check=False)
        shutil.rmtree(home / "storage", ignore_errors=True)


@pytest.fixture(scope="module")
def service():
    """compose.yaml's phase-lite service, with its top-level volumes and secrets."""
    compose = yaml.safe_load(COMPOSE.read_text())
    return compose, compose["services"][SERVICE]


class Container:
    """The image's entry point run as compose.yaml's service would run it, by chroot.

    ``volume`` stands for the named volume (initialised with the ownership of the image's
    directory, as Docker does), ``secrets`` for the directory compose mounts at /run/secrets.
    """

    def __init__(self, image, service, base, extra_env):
        self.image, (self.compose, self.service) = image, service
        self.base = base
        self.volumes = {}
        for entry in self.service["volumes"]:
            name, target = entry.split(":")[:2]
            source = base / "volumes" / name
            source.mkdir(parents=True)
            inside = image.root / target.lstrip("/")
            stat = inside.stat()
            os.chown(source, stat.st_uid, stat.st_gid)
            source.chmod(stat.st_mode & 0o7777)
            self.volumes[target] = source
        self.secrets = base / "secrets"
        self.secrets.mkdir()
        self.uid, self.gid = image.user()
        self.env = {"HOME": image.home(self.uid), **image.env,
                    **{key: str(value) for key, value in self.service["environment"].items()},
                    **extra_env}
        self.processes = []

    def add_secret(self, name, content: bytes):
        """A compose file secret: a host file the container's user can read."""
        path = self.secrets / name
        path.write_bytes(content)
        os.chown(path, self.uid, self.gid)
        path.chmod(0o400)
        return path

    def command(self, argv):
        root, q = str(self.image.root), shlex.quote
        lines = ["set -eu", "mount --make-rprivate /",
                 f"mount --bind {q(root)} {q(root)}",
                 f"mount -t proc proc {q(root + '/proc')}",
                 f"mount -t tmpfs -o mode=0755,nosuid tmpfs {q(root + '/dev')}"]
        for node in DEVICES:
            inside = q(f"{root}/dev/{node}")
            lines += [f"touch {inside}", f"mount --bind /dev/{node} {inside}"]
        for target in self.service.get("tmpfs", []):
            lines.append(f"mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs {q(root + target)}")
        for target, source in self.volumes.items():
            lines.append(f"mount --bind {q(str(source))} {q(root + target)}")
        lines += [f"mount --bind {q(str(self.secrets))} {q(root + '/run/secrets')}",
                  f"mount -o remount,bind,ro {q(root + '/run/secrets')}"]
        if self.service.get("read_only"):
            lines.append(f"mount -o remount,bind,ro {q(root)}")
        lines.append('exec "$@"')
        for target in ("proc", "dev", "run/secrets", *self.service.get("tmpfs", [])):
            (self.image.root / target.lstrip("/")).mkdir(parents=True, exist_ok=True)
        spec = {"root": root, "workdir": self.image.config.get("WorkingDir") or "/",
                "uid": self.uid, "gid": self.gid, "argv": argv, "env": self.env}
        return ["unshare", "--mount", "--", "sh", "-c", "\n".join(lines), "sh",
                sys.executable, "-c", RUNNER, json.dumps(spec)]

    def entry_point(self, args=None):
        """The image's ENTRYPOINT with ``args``, or with its CMD (as ``docker run IMAGE``)."""
        return list(self.image.config.get("Entrypoint") or []) + list(
            self.image.config.get("Cmd") or [] if args is None else args)

    def run(self, argv, check=True, stdin=""):
        """A one-off command (as ``docker compose run --rm``); return (status, output)."""
        result = subprocess.run(self.command(argv), input=stdin, capture_output=True, text=True,
                                timeout=TIMEOUT)
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result.returncode, result.stdout + result.stderr

    def start(self, url, log):
        """The service itself (``docker compose up``): the entry point with the image's CMD."""
        process = subprocess.Popen(self.command(self.entry_point()), stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the server exited: {Path(log.name).read_text()}"
            try:
                if requests.get(url + "/health/", timeout=1).status_code == 200:
                    return process
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(f"no answer on /health/: {Path(log.name).read_text()}")

    def health(self):
        """The image's own HEALTHCHECK command, run inside: its exit status."""
        test = self.image.config["Healthcheck"]["Test"]
        assert test[0] == "CMD", test
        return self.run(test[1:], check=False)

    def stop_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)


@pytest.fixture
def container(image, service, tmp_path):
    port = free_port()
    # The host's network is shared (no network namespace): a free loopback port stands in for
    # compose's port mapping, given as `docker run -e PHASE_LITE_LISTEN=...` would give it.
    box = Container(image, service, tmp_path, {"PHASE_LITE_LISTEN": f"127.0.0.1:{port}"})
    box.url = f"http://127.0.0.1:{port}"
    try:
        yield box
    finally:
        box.stop_all()


def phase_cli(home, url, token, *args, stdin=""):
    """The real Phase CLI, outside the image; return its output (it must succeed)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "LANG": "C.UTF-8", "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
           "PHASE_HOST": url, "PHASE_SERVICE_TOKEN": token, "COLUMNS": "250"}
    result = subprocess.run([str(PHASE), *args], input=stdin, capture_output=True, text=True,
                            timeout=TIMEOUT, env=env, cwd=home, start_new_session=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


# -- the image as built ---------------------------------------------------------------------


def test_the_image_is_small_runs_as_a_user_and_holds_no_data_or_test_tools(image):
    assert image.size < MAX_IMAGE_MB * 1_000_000, image.size
    uid, _ = image.user()
    assert uid != 0
    env = image.env
    assert env["PHASE_LITE_DATA_DIR"] == "/var/lib/phase-lite"
    assert env["PHASE_LITE_DATA_DIR"] in image.config["Volumes"]
    assert not env["PHASE_LITE_MASTER_KEY_FILE"].startswith(env["PHASE_LITE_DATA_DIR"] + "/")
    data = image.root / env["PHASE_LITE_DATA_DIR"].lstrip("/")
    assert (data.stat().st_uid, list(data.iterdir())) == (uid, [])
    [site] = image.root.glob("opt/phase-lite/lib/python3*/site-packages")
    installed = {path.name.lower() for path in site.iterdir()}
    assert "phase_lite" in installed and (site / "phase_lite/console/templates").is_dir()
    for test_only in ("pytest", "playwright", "hypothesis", "schemathesis", "pip"):
        assert test_only not in installed
    assert not (image.root / "src").exists()
    leaked = [str(path) for pattern in ("master.key", "*.sqlite3", "owner.token")
              for path in image.root.rglob(pattern)]
    assert leaked == []
    assert image.config["Entrypoint"] == ["/opt/phase-lite/bin/phase-lite"]
    assert image.config["Cmd"] == ["serve"]


def test_compose_runs_the_image_with_a_named_volume_a_key_secret_and_a_read_only_root(
        image, service):
    compose, svc = service
    env = image.env
    [volume] = svc["volumes"]
    name, target = volume.split(":")
    assert name in compose["volumes"] and target == env["PHASE_LITE_DATA_DIR"]
    assert svc["environment"]["PHASE_LITE_DATA_DIR"] == env["PHASE_LITE_DATA_DIR"]
    assert svc["secrets"] == ["master_key"] and "file" in compose["secrets"]["master_key"]
    assert svc["environment"]["PHASE_LITE_MASTER_KEY_FILE"] == "/run/secrets/master_key"
    assert svc["read_only"] is True and "/tmp" in svc["tmpfs"]
    assert svc["user"] == image.config["User"] and svc["cap_drop"] == ["ALL"]
    assert svc["healthcheck"]["test"] == image.config["Healthcheck"]["Test"]
    assert svc["build"]["dockerfile"] == CONTAINERFILE.name


# -- the image started -----------------------------------------------------------------------


def test_the_entry_point_serves_health_and_the_phase_cli_from_its_own_files(
        image, container, tmp_path, installed_clients):
    volume = container.volumes[image.env["PHASE_LITE_DATA_DIR"]]
    container.add_secret("master_key", base64.b64encode(os.urandom(32)) + b"\n")
    code, output = container.run(["/opt/phase-lite/bin/python", "-c", "open('/opt/x', 'w')"],
                                 check=False)
    assert code != 0 and "Read-only file system" in output  # the root is read-only

    # First start, as the README says: init once (docker compose run --rm phase-lite init).
    _, output = container.run(container.entry_point(["init", "--json"]))
    assert json.loads(output.splitlines()[-1])["token"].startswith("pss_user:")
    assert "phase_lite.sqlite3" in {path.name for path in volume.iterdir()}
    assert volume.joinpath("phase_lite.sqlite3").stat().st_uid == container.uid

    assert container.health()[0] != 0  # nothing serving yet: the health check fails
    log = open(tmp_path / "server.log", "ab")
    server = container.start(container.url, log)
    assert requests.get(container.url + "/health/", timeout=5).json()["status"] == "alive"
    assert container.health() == (0, "")

    # The admin command through the entry point (docker compose exec/run), then the Phase CLI.
    container.run(container.entry_point(["apps", "create", "my-app"]))
    container.run(container.entry_point(["service-accounts", "create", "ci", "--json"]))
    container.run(container.entry_point(["service-accounts", "grant", "ci", "--app", "my-app"]))
    _, token = container.run(container.entry_point(
        ["service-accounts", "tokens", "create", "ci"]))
    token = token.strip().splitlines()[-1]
    home = tmp_path / "home"
    home.mkdir()
    phase_cli(home, container.url, token, "secrets", "create", "DB_HOST", "--app", "my-app",
              "--env", "dev", stdin="db.internal")
    output = phase_cli(home, container.url, token, "secrets", "get", "DB_HOST", "--app",
                       "my-app", "--env", "dev")
    assert json.loads(output[output.index("{"):])["value"] == "db.internal"

    # SIGTERM (docker stop) stops it cleanly; the next start serves the same secrets.
    os.kill(server.pid, signal.SIGTERM)
    assert server.wait(30) == 0
    assert container.health()[0] != 0
    container.start(container.url, log)
    output = phase_cli(home, container.url, token, "secrets", "export", "--app", "my-app",
                       "--env", "dev", "--format", "dotenv")
    assert 'DB_HOST="db.internal"' in output
    assert "master.key" not in {path.name for path in volume.iterdir()}
    log.close()
    print(f"\nimage {image.size / 1e6:.0f} MB on base {image.base}; "
          + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in image.timings.items()))
