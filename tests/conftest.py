"""Shared fixtures: a fresh data directory, app and database per test, tokens, a live server.

A test marked ``both_backends`` (the store, domain, HTTP contract and console modules mark
themselves with ``pytestmark``) that uses a database runs twice: on SQLite and on a PostgreSQL
server the session starts itself (``postgres_server.PostgresServer``), emptied before each
test. The others run on SQLite only.
"""

import dataclasses
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

import support
from live import CHROMIUM, CHROMIUM_ARGS, REPO, TEST_XDG_DATA_HOME, LiveServer, database_env
from support import bearer_headers
from phase_lite import accounts
from phase_lite.app import create_app, init_data_dir, open_services
from phase_lite.cli import main as cli_main
from phase_lite.config import load_config

os.environ["XDG_DATA_HOME"] = str(TEST_XDG_DATA_HOME)  # see ``live.TEST_XDG_DATA_HOME``

def pytest_unconfigure(config):
    shutil.rmtree(TEST_XDG_DATA_HOME, ignore_errors=True)


def pytest_generate_tests(metafunc):
    if ("backend" in metafunc.fixturenames
            and metafunc.definition.get_closest_marker("both_backends") is not None
            and metafunc.definition.get_closest_marker("sqlite_only") is None):
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request):
    """The database backend of this test: "sqlite", or "postgresql" too where the test (or its
    module's ``pytestmark``) is marked ``both_backends``."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def postgres_server():
    from postgres_server import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_database(postgres_server):
    """(URL, an admin connection, the tables to empty) of one migrated test database."""
    import psycopg

    from phase_lite.store.postgres import GENERATION_TABLE, MIGRATIONS_TABLE, PostgresDatabase

    url = postgres_server.create_database("phase_lite_test")
    db = PostgresDatabase(url)
    db.migrate()
    db.close()
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SET lock_timeout = '10s'")  # a test that left a transaction open fails loudly
    # Emptied with DELETE (TRUNCATE makes new files: ten times slower on tables this small),
    # foreign-key triggers off so that any order will do (the server's superuser may).
    conn.execute("SET session_replication_role = replica")
    tables = [name for (name,) in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    ) if name not in (GENERATION_TABLE, MIGRATIONS_TABLE)]
    yield url, conn, tables
    conn.close()


@pytest.fixture
def database_url(backend, request):
    """None on SQLite; on PostgreSQL the URL of the (emptied) test database."""
    if backend == "sqlite":
        return None
    url, conn, tables = request.getfixturevalue("postgres_database")
    conn.execute("; ".join(f"DELETE FROM {table}" for table in tables))
    return url


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "data"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def config(data_dir, database_url):
    env = {"PHASE_LITE_DATA_DIR": str(data_dir)}
    if database_url:
        env["PHASE_LITE_DATABASE_URL"] = database_url
    return load_config(env, testing=True)


@pytest.fixture(scope="session")
def initialised_data_dir(tmp_path_factory):
    """One data directory initialised for the whole session (key, schema, roles, Owner):
    building it costs more than copying it, so each test gets a copy."""
    path = tmp_path_factory.mktemp("initialised") / "data"
    path.mkdir(mode=0o700)
    issued = init_data_dir(load_config({"PHASE_LITE_DATA_DIR": str(path)}, testing=True),
                           "owner@example.com")
    return path, issued


@pytest.fixture
def owner(config, initialised_data_dir):
    """The Owner's IssuedToken of a freshly initialised data directory (a copy of the
    session's, with the same token; on PostgreSQL, initialised in the emptied database)."""
    if config.database_url:
        return init_data_dir(config, "owner@example.com")
    source, issued = initialised_data_dir
    for item in source.iterdir():
        shutil.copy2(item, config.data_dir / item.name)  # keeps the 0600 modes
    return issued


@pytest.fixture
def app(config, owner):
    flask_app = create_app(config)
    yield flask_app
    flask_app.extensions["phase_lite"].close()


@pytest.fixture
def services(app):
    return app.extensions["phase_lite"]


@pytest.fixture
def db(services):
    return services.db


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def owner_client(app, services):
    """A test client signed in to the console as the Owner; ``.csrf`` holds its form token."""
    support.set_console_password(services, "owner@example.com", support.CONSOLE_PASSWORD)
    signed_in = app.test_client()
    assert support.console_sign_in(signed_in).status_code == 303
    signed_in.csrf = support.csrf_of(signed_in.get("/console/apps/"))
    return signed_in


@pytest.fixture(scope="module")
def installed_clients():
    """The real Phase clients, installed on first use."""
    needed = [support.PHASE, support.SDK_PYTHON] + (
        [support.NODE_SDK] if shutil.which("npm") else [])
    if not all(path.exists() for path in needed):
        subprocess.run(["bash", "tests/clients/install.sh"], cwd=REPO, check=True, timeout=900)
    missing = [str(path) for path in needed if not path.exists()]
    assert not missing, f"Phase clients missing after tests/clients/install.sh: {missing}"


@pytest.fixture
def run(config):
    """``run(*args, ok=True)``: the ``phase-lite`` command on this test's data directory, in
    process; with ``ok`` it must exit 0."""
    runner = CliRunner()

    def invoke(*args, ok=True):
        result = runner.invoke(cli_main, list(args), env=database_env(config),
                               catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


@pytest.fixture
def owner_headers(owner):
    return bearer_headers(owner)


@pytest.fixture
def make_app(services):
    """Create an app (default environments unless names are given); return its row and envs."""

    def make(name="demo", env_names=None):
        return support.make_app(services, name, env_names)

    return make


@pytest.fixture
def demo(make_app):
    """An app "demo" with Development, Staging and Production."""
    return make_app("demo")


@pytest.fixture
def app_id(demo):
    return demo[0]["id"]


@pytest.fixture
def envs(demo):
    """{name: environment row} of "demo"."""
    return demo[1]


@pytest.fixture
def make_service_token(services):
    """A service account granted the given environment rows; return its IssuedToken."""

    def make(env_rows, name="ci", role="Service", expires_at=None):
        return support.make_service_account(services, name, role, env_rows, expires_at)[1]

    return make


@pytest.fixture
def sa_token(demo, make_service_token):
    """A service-account token with every environment of "demo"."""
    _, envs = demo
    return make_service_token(list(envs.values()))


@pytest.fixture
def sa_headers(sa_token):
    return bearer_headers(sa_token)


def secrets_routes(request, client, app_id, headers):
    return getattr(request.module, "SECRETS_ROUTES", support.SecretsRoutes)(client, app_id,
                                                                            headers)


@pytest.fixture
def pat(request, client, app_id, owner_headers):
    """The Owner's calls to the demo app's Development secrets: ``support.SecretsRoutes``, or
    the test module's own ``SECRETS_ROUTES`` class."""
    return secrets_routes(request, client, app_id, owner_headers)


@pytest.fixture
def sa(request, client, app_id, sa_headers):
    """The same calls as the service account "ci" (granted every environment of the demo app)."""
    return secrets_routes(request, client, app_id, sa_headers)


@pytest.fixture
def live_server(config, owner):
    """A served phase_lite on the test's data directory (initialised, Owner token in .owner)."""
    server = LiveServer(config.data_dir, database_env(config))
    server.owner = owner
    server.start()
    yield server
    server.stop()


@pytest.fixture
def app_with(config, owner):
    """Build an app on the test's data directory with some settings changed (closed after)."""
    made = []

    def make(**changes):
        flask_app = create_app(dataclasses.replace(config, **changes))
        made.append(flask_app)
        return flask_app

    yield make
    for flask_app in made:
        flask_app.extensions["phase_lite"].close()


# -- the browser (web console tests) ---------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, one per test session (``make browser``)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run 'make browser' (installs chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A live ``phase-lite serve`` for a browser test module (its own sign-in throttle), with
    an Owner, a Manager and a Developer who have console passwords; ``setup_link(email)``
    gives a one-time link, ``services`` the same data from the test's side."""
    from phase_lite.console import sessions

    data_dir = tmp_path_factory.mktemp("console") / "data"
    config = load_config({"PHASE_LITE_DATA_DIR": str(data_dir)})
    init_data_dir(config, "owner@example.com")
    services = open_services(config)
    try:
        db, by = services.db, support.operator(services)
        for email, role in (("manager@example.com", "Manager"), ("dev@example.com", "Developer")):
            support.make_user(services, email, role)
        for email in ("owner@example.com", "manager@example.com", "dev@example.com"):
            support.set_console_password(services, email, support.BROWSER_PASSWORD)
        server = LiveServer(data_dir)
        server.config = config
        server.setup_link = lambda email: "/console/welcome?token=" + sessions.issue_link(
            db, "setup", accounts.user_by_email(services, by, email)["id"])
        server.services = services
        server.start()
        yield server
        server.stop()
    finally:
        services.close()


@pytest.fixture
def context(browser, server):
    made = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    yield made
    made.close()


@pytest.fixture
def page(context):
    return context.new_page()
