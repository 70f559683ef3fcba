"""Three ``phase-lite serve`` nodes on one PostgreSQL database, as behind a load balancer.

Each node keeps its in-memory caches; the cluster generation makes every answer exact on every
node on the very next request: the same bytes everywhere after a write, a revoked token or a
removed grant refused at once by the other nodes, one winner among concurrent creates of one
key, and no acknowledged write lost when a node is killed in the middle of writes.
"""

import signal
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from live import LiveServer
from support import bearer_headers
from phase_lite.app import init_data_dir
from phase_lite.config import load_config

pytestmark = pytest.mark.slow

GONE = {"error": "Token expired or deleted"}
SA_NO_ACCESS = {"error": "Service account cannot access this environment"}


class Cluster:
    def __init__(self, tmp_path, url, count=3):
        self.data_dir = tmp_path / "data"
        self.data_dir.mkdir(mode=0o700)
        self.env = {"PHASE_LITE_DATABASE_URL": url}
        config = load_config({"PHASE_LITE_DATA_DIR": str(self.data_dir), **self.env})
        self.owner = bearer_headers(init_data_dir(config, "owner@example.com"))
        self.nodes = [LiveServer(self.data_dir, self.env) for _ in range(count)]

    def start(self):
        for node in self.nodes:
            node.start()
        return self

    def stop(self):
        for node in self.nodes:
            node.stop()

    def call(self, node, method, path, headers=None, **kwargs):
        return requests.request(method, self.nodes[node].url + path,
                                headers=headers or self.owner, timeout=30, **kwargs)


@pytest.fixture
def cluster(tmp_path, postgres_server):
    url = postgres_server.create_database(f"cluster_{uuid.uuid4().hex[:12]}")
    running = Cluster(tmp_path, url).start()
    yield running
    running.stop()


@pytest.fixture
def deployment(cluster):
    """An app (Development, Staging) and a service account holding Development, made through
    the first node: (app id, {env name: id}, service account id, its bearer headers)."""
    app = cluster.call(0, "POST", "/v1/apps/",
                       json={"name": "shop", "environments": ["Development", "Staging"]})
    assert app.status_code == 201, app.text
    envs = {env["name"]: env["id"] for env in app.json()["environments"]}
    roles = {role["name"]: role["id"]
             for role in cluster.call(0, "GET", "/v1/roles/").json()["data"]}
    sa = cluster.call(0, "POST", "/v1/service-accounts/",
                      json={"name": "ci", "role_id": roles["Service"]})
    assert sa.status_code == 201, sa.text
    sa_id = sa.json()["id"]
    granted = cluster.call(0, "PUT", f"/v1/service-accounts/{sa_id}/access/", json={
        "apps": [{"id": app.json()["id"], "environments": [envs["Development"]]}]})
    assert granted.status_code == 200, granted.text
    headers = {"Authorization": f"Bearer {sa.json()['initialToken']['bearerToken']}"}
    return app.json()["id"], envs, sa_id, headers


def secrets_path(app_id, env="Development", **params):
    query = "".join(f"&{name}={value}" for name, value in params.items())
    return f"/v1/secrets/?app_id={app_id}&env={env}{query}"


def answers(cluster, path, headers):
    """(status, body bytes) of one GET on every node."""
    return [(r.status_code, r.content) for r in
            (cluster.call(node, "GET", path, headers) for node in range(len(cluster.nodes)))]


def test_every_node_answers_the_same_bytes_after_each_write(cluster, deployment):
    app_id, _, _, headers = deployment
    path = secrets_path(app_id)
    for node in range(3):
        answers(cluster, path, headers)  # every node has the answer cached
    writes = [
        ("POST", {"secrets": [{"key": "A", "value": "1"}, {"key": "B", "value": "${A}"}]}),
        ("POST", {"secrets": [{"key": "C", "value": "3", "path": "/deep"}]}),
        ("PUT", None),
        ("DELETE", None),
    ]
    for step, (method, body) in enumerate(writes):
        node = step % 3
        if method == "PUT":
            secret = cluster.call(node, "GET", secrets_path(app_id, key="A"), headers).json()[0]
            body = {"secrets": [{"id": secret["id"], "value": "one"}]}
        elif method == "DELETE":
            secret = cluster.call(node, "GET", secrets_path(app_id, key="C"), headers).json()[0]
            body = {"secrets": [secret["id"]]}
        written = cluster.call(node, method, path, headers, json=body)
        assert written.status_code == 200, written.text
        seen = answers(cluster, path, headers)
        assert seen[0][0] == 200 and len(set(seen)) == 1, seen
    values = {item["key"]: item["value"] for item in
              cluster.call(2, "GET", path, headers).json()}
    assert values == {"A": "one", "B": "one"}


def test_a_revoked_token_or_grant_is_refused_by_every_other_node_at_once(cluster, deployment):
    app_id, envs, sa_id, headers = deployment
    path = secrets_path(app_id)
    cluster.call(0, "POST", path, json={"secrets": [{"key": "K", "value": "v"}]})
    assert [status for status, _ in answers(cluster, path, headers)] == [200, 200, 200]

    granted = cluster.call(1, "PUT", f"/v1/service-accounts/{sa_id}/access/", json={
        "apps": [{"id": app_id, "environments": [envs["Staging"]]}]})
    assert granted.status_code == 200
    for node in (0, 2):
        refused = cluster.call(node, "GET", path, headers)
        assert (refused.status_code, refused.json()) == (401, SA_NO_ACCESS)
        assert cluster.call(node, "GET", secrets_path(app_id, "Staging"), headers).status_code \
            == 200

    token_id = cluster.call(0, "GET", f"/v1/service-accounts/{sa_id}/").json()["tokens"][0]["id"]
    revoked = cluster.call(2, "DELETE", f"/v1/service-accounts/{sa_id}/tokens/{token_id}/")
    assert revoked.status_code == 204
    for node in (0, 1):
        refused = cluster.call(node, "GET", secrets_path(app_id, "Staging"), headers)
        assert (refused.status_code, refused.json()) == (401, GONE)


def test_concurrent_creates_of_one_key_through_different_nodes_have_one_winner(cluster,
                                                                               deployment):
    app_id, _, _, headers = deployment
    path = secrets_path(app_id)
    for attempt in range(5):
        key = f"RACE_{attempt}"
        barrier = threading.Barrier(6)

        def create(node):
            barrier.wait()
            return cluster.call(node, "POST", path, headers,
                                json={"secrets": [{"key": key, "value": str(node)}]}).status_code

        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(create, [0, 1, 2, 0, 1, 2]))
        assert sorted(statuses) == [200, 409, 409, 409, 409, 409], statuses
        listed = cluster.call(attempt % 3, "GET", secrets_path(app_id, key=key), headers).json()
        assert len(listed) == 1


def test_a_node_killed_under_concurrent_writers_loses_no_acknowledged_write(cluster,
                                                                            deployment):
    app_id, _, _, headers = deployment
    path = secrets_path(app_id)
    victim = cluster.nodes[0]
    acknowledged, stop = [], threading.Event()
    lock = threading.Lock()

    def writer(number):
        batch = 0
        while not stop.is_set():
            keys = [f"W{number}_{batch}_{part}" for part in range(3)]
            batch += 1
            try:
                response = requests.post(victim.url + path, headers=headers, timeout=30, json={
                    "secrets": [{"key": key, "value": key.lower()} for key in keys]})
            except requests.RequestException:
                return  # the node is gone
            if response.status_code == 200:
                with lock:
                    acknowledged.extend(keys)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 60:
        stop.wait(0.02)
    victim.stop(signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join()

    stored = {item["key"]: item["value"] for item in
              cluster.call(1, "GET", path, headers).json()}
    assert set(acknowledged) <= set(stored)
    assert all(value == key.lower() for key, value in stored.items())
    batches = {}
    for key in stored:
        batches.setdefault(key.rsplit("_", 1)[0], set()).add(key)
    assert all(len(keys) == 3 for keys in batches.values())  # no batch half-written
    assert cluster.call(2, "GET", path, headers).json() == cluster.call(1, "GET", path,
                                                                        headers).json()


def test_one_node_at_a_time_syncs_a_mirror(tmp_path, postgres_server):
    """Two nodes, a mirror due every 2 seconds: each due sync is done once, by whichever node
    takes the lock first (the other finds it done), never by both."""
    import json
    import time

    import support
    from phase_lite import mirror
    from phase_lite.app import open_services
    from phase_lite.secrets import NewSecret
    from phase_source import PhaseSource

    (tmp_path / "upstream").mkdir()
    source = PhaseSource(tmp_path / "upstream")
    try:
        support.make_app(source.services, "shop", ["Development"])
        source.create("shop", "Development", NewSecret(key="A", value="1"))
        source.server.start()
        url = postgres_server.create_database(f"mirror_{uuid.uuid4().hex[:12]}")
        cluster = Cluster(tmp_path, url, count=0)
        config = load_config({"PHASE_LITE_DATA_DIR": str(cluster.data_dir), **cluster.env})
        services = open_services(config)
        try:
            mirror.add_source(services, support.operator(services), host=source.server.url,
                              token_text=source.owner.token, name="up")
        finally:
            services.close()
        cluster.nodes = [LiveServer(cluster.data_dir, {**cluster.env,
                                                       "PHASE_LITE_MIRROR_INTERVAL": "2"})
                         for _ in range(2)]
        cluster.start()
        try:
            time.sleep(11)
        finally:
            cluster.stop()
        services = open_services(config)
        try:
            events = services.db.all("SELECT created_at, details FROM audit_events"
                                     " WHERE action = 'sync' ORDER BY id")
        finally:
            services.close()
    finally:
        source.close()
    assert len(events) >= 3, [row[0] for row in events]
    assert all("error" not in json.loads(row[1]) for row in events)
    # However long the nodes ran, a due sync is one sync: never two within the interval (two
    # nodes both finding the source due would sync it a fraction of a second apart).
    times = [time.mktime(time.strptime(row[0][:19], "%Y-%m-%dT%H:%M:%S"))
             + float("0" + row[0][19:-1]) for row in events]
    assert min(b - a for a, b in zip(times, times[1:])) >= 1.5, [row[0] for row in events]


def test_a_mirror_sync_while_another_node_syncs_is_refused(tmp_path, postgres_server):
    """``mirror sync`` (and the console's "Sync now") wait for no one: while another node holds
    the mirrors' lock they say so and copy nothing (two nodes would make a new app twice)."""
    import support
    from phase_lite import mirror
    from phase_lite.app import open_services
    from phase_lite.secrets import NewSecret
    from phase_lite.store.postgres import TASK_LOCKS, AdvisoryLock
    from phase_source import PhaseSource

    (tmp_path / "upstream").mkdir()
    source = PhaseSource(tmp_path / "upstream")
    support.make_app(source.services, "shop", ["Development"])
    source.create("shop", "Development", NewSecret(key="A", value="1"))
    source.server.start()
    url = postgres_server.create_database(f"mirror_{uuid.uuid4().hex[:12]}")
    cluster = Cluster(tmp_path, url, count=0)
    services = open_services(load_config({"PHASE_LITE_DATA_DIR": str(cluster.data_dir),
                                          **cluster.env}))
    try:
        by = support.operator(services)
        mirror.add_source(services, by, host=source.server.url, token_text=source.owner.token,
                          name="up")
        other_node = AdvisoryLock.try_take(url, TASK_LOCKS["mirror sync"], shared=False)
        try:
            with pytest.raises(mirror.MirrorError, match=mirror.BUSY):
                mirror.sync_named(services, by, "up")
        finally:
            other_node.close()
        assert services.db.scalar("SELECT COUNT(*) FROM apps") == 0
        assert services.db.scalar("SELECT last_error FROM mirror_sources") is None
        (outcome,) = mirror.sync_named(services, by, "up")
        assert outcome[1].created == 1
    finally:
        services.close()
        source.close()
