"""A real OpenID provider for the console's OpenID Connect tests: the npm package
``oidc-provider`` (a certified implementation), run by ``tests/oidc/provider.mjs`` on a
loopback port (``make oidc-provider`` installs it), with the test clients and accounts below.

Its built-in development login form signs in any login named in ``ACCOUNTS`` (any password);
``sign_in_at_provider`` fills it (and the consent form) over HTTP and returns the callback URL
the provider redirects to, without following it.
"""

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urljoin

import requests

from live import free_port

HERE = Path(__file__).resolve().parent / "oidc"
SCRIPT = HERE / "provider.mjs"
CLIENT_ID = "phase-lite"
OTHER_CLIENT_ID = "phase-lite-other"  # another audience
SHORT_CLIENT_ID = "phase-lite-short"  # ID tokens valid one second
CLIENT_SECRET = "a test client secret that is long enough"
TEST_CLIENT_CALLBACK = "http://localhost/console/oidc/callback"  # Flask's test client

ACCOUNTS = {
    "owner": {"email": "owner@example.com", "email_verified": True, "name": "The Owner"},
    "dev": {"email": "dev@example.com", "email_verified": True, "groups": ["staff"]},
    "stranger": {"email": "stranger@elsewhere.example", "email_verified": True},
    "joiner": {"email": "joiner@team.example", "email_verified": True,
               "groups": ["phase-users"]},
    "loner": {"email": "loner@team.example", "email_verified": True, "groups": ["other"]},
    # A member's address the provider has not verified: it must not sign in as that member.
    "impostor": {"email": "owner@example.com", "email_verified": False},
    "nomail": {},
}


class OpenIDTestProvider:
    """``node provider.mjs`` on a free loopback port; ``restart()`` keeps the port and makes
    a new signing key (a new ``kid``)."""

    def __init__(self, tmp_dir, callbacks=(TEST_CLIENT_CALLBACK,)):
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.kid = None
        self.settings = Path(tmp_dir) / f"oidc-provider-{self.port}.json"
        clients = [{"client_id": client_id, "client_secret": CLIENT_SECRET,
                    "redirect_uris": list(callbacks), "grant_types": ["authorization_code"],
                    "response_types": ["code"]}
                   for client_id in (CLIENT_ID, OTHER_CLIENT_ID, SHORT_CLIENT_ID)]
        self.settings.write_text(json.dumps({
            "port": self.port, "clients": clients, "accounts": ACCOUNTS,
            "shortIdTokenClients": [SHORT_CLIENT_ID]}))
        self.process = None

    def start(self, timeout=20):
        node = shutil.which("node")
        assert node and (HERE / "node_modules" / "oidc-provider").is_dir(), \
            "oidc-provider is missing: run 'make oidc-provider'"
        self.process = subprocess.Popen([node, str(SCRIPT), str(self.settings)],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                        text=True)
        line = self.process.stdout.readline()  # "ready <issuer> <kid>"
        assert line.startswith("ready "), f"oidc-provider did not start: {line!r}"
        self.kid = line.split()[2]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(self.issuer + "/.well-known/openid-configuration", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("oidc-provider did not answer in time")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process and self.process.stdout:
            self.process.stdout.close()

    def restart(self):
        self.stop()
        return self.start()

    def settings_env(self, client_id=CLIENT_ID, **extra):
        """The ``PHASE_LITE_OIDC_*`` settings of a phase_lite signing in through it."""
        return {"PHASE_LITE_OIDC_ISSUER": self.issuer, "PHASE_LITE_OIDC_CLIENT_ID": client_id,
                "PHASE_LITE_OIDC_CLIENT_SECRET": CLIENT_SECRET,
                "PHASE_LITE_OIDC_SCOPES": "openid email profile groups", **extra}


FORM_ACTION = re.compile(r'<form[^>]*action="([^"]+)"')


def sign_in_at_provider(authorization_url, login, stop_at="http://localhost/"):
    """Go through the provider's login and consent as ``login``; return the URL it sends the
    browser back to (under ``stop_at``), not followed."""
    browser = requests.Session()
    answer = browser.get(authorization_url, allow_redirects=False, timeout=10)
    for _ in range(12):
        if answer.is_redirect:
            location = urljoin(answer.url, answer.headers["Location"])
            if location.startswith(stop_at):
                return location
            answer = browser.get(location, allow_redirects=False, timeout=10)
            continue
        assert answer.status_code == 200, answer.text[:500]
        action = urljoin(answer.url, FORM_ACTION.search(answer.text).group(1))
        if 'name="login"' in answer.text:
            fields = {"prompt": "login", "login": login, "password": "any"}
        else:
            fields = {"prompt": "consent"}
        answer = browser.post(action, data=fields, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never sent the browser back")
