"""SQLite discipline, and acknowledged writes surviving SIGKILL and concurrent writers."""

import random
import secrets as random_bytes
import signal
import sqlite3
import threading
import time
from collections import defaultdict

import pytest
import requests

from live import LiveServer
from support import bearer_headers
from phase_lite.app import create_app
from phase_lite.config import ConfigError
from phase_lite.store import BUSY_TIMEOUT_MS, SqliteDatabase, StoreError

# -- the connection settings -------------------------------------------------------------------


def test_every_connection_has_the_durable_settings(config, owner):
    db = SqliteDatabase(config.database)
    try:
        assert db.scalar("PRAGMA journal_mode") == "wal"
        assert db.scalar("PRAGMA synchronous") == 2  # FULL
        assert db.scalar("PRAGMA busy_timeout") == BUSY_TIMEOUT_MS >= 5000
        assert db.scalar("PRAGMA foreign_keys") == 1
        seen = {}

        def other_thread():
            seen["conn"] = db.conn
            seen["settings"] = [db.scalar(f"PRAGMA {name}") for name in
                                ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")]

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(10)
        assert seen["conn"] is not db.conn  # one connection per thread
        assert seen["settings"] == ["wal", 2, BUSY_TIMEOUT_MS, 1]
    finally:
        db.close()


def test_write_transactions_take_the_write_lock_at_begin(config, owner):
    db = SqliteDatabase(config.database)
    other = sqlite3.connect(config.database, isolation_level=None, timeout=0)
    try:
        with db.transaction():
            # BEGIN IMMEDIATE: the lock is held before the first write of the block.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()
        db.close()


def test_concurrent_writers_queue_instead_of_failing(config, owner):
    db = SqliteDatabase(config.database)
    with db.transaction():
        db.execute("INSERT INTO meta (key, value) VALUES ('counter', 0)")
    errors = []

    def bump():
        try:
            for _ in range(50):
                with db.transaction():
                    value = int(db.scalar("SELECT value FROM meta WHERE key = 'counter'"))
                    time.sleep(0.0005)  # widen the read-modify-write window
                    db.execute("UPDATE meta SET value = ? WHERE key = 'counter'", (value + 1,))
        except StoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert errors == []
        assert int(db.scalar("SELECT value FROM meta WHERE key = 'counter'")) == 300
    finally:
        db.close()


def test_a_failed_transaction_leaves_nothing(config, owner):
    db = SqliteDatabase(config.database)
    try:
        with pytest.raises(RuntimeError):
            with db.transaction():
                db.execute("INSERT INTO meta (key, value) VALUES ('half', 'written')")
                raise RuntimeError("stop")
        assert db.scalar("SELECT count(*) FROM meta WHERE key = 'half'") == 0
    finally:
        db.close()


def test_start_up_refuses_a_corrupt_database(config, owner):
    db = SqliteDatabase(config.database)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = db.scalar("PRAGMA page_count")
    page_size = db.scalar("PRAGMA page_size")
    db.close()
    with open(config.database, "r+b") as handle:
        for page in range(2, pages):  # every b-tree page but the first (the header)
            handle.seek(page * page_size - page_size + 8)
            handle.write(b"\xff" * 64)
    with pytest.raises(ConfigError) as caught:
        create_app(config)
    message = str(caught.value)
    assert message.startswith("PHASE_LITE_DATABASE: ")
    assert "\n" not in message


# -- against a served process ------------------------------------------------------------------


def secrets_url(server, app_row):
    return f"{server.url}/service/public/v1/secrets/?app_id={app_row['id']}&env=Development"


class Ledger:
    """What the clients were told: acknowledged values, and values sent but not answered."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {}                   # id -> value, or None once deleted
        self.in_flight = defaultdict(set)  # id -> values (None: delete) sent without an answer
        self.unanswered_creates = set()   # keys of creates without an answer
        self.answers = defaultdict(int)   # status -> count

    def state_matches(self, present):
        """Assert the served state ``{id: (key, value)}`` is what the answers imply."""
        for secret_id, value in self.acked.items():
            allowed = {value} | self.in_flight.get(secret_id, set())
            actual = present[secret_id][1] if secret_id in present else None
            assert actual in allowed, f"secret {secret_id}: acknowledged write lost"
        for secret_id, (key, _) in present.items():
            if secret_id not in self.acked:
                assert key in self.unanswered_creates, f"secret {secret_id} was never written"

    def settle(self, present):
        """After a check: take the served state as the new acknowledged truth."""
        self.acked = {secret_id: present[secret_id][1] if secret_id in present else None
                      for secret_id in set(self.acked) | set(present)}
        self.in_flight.clear()
        self.unanswered_creates.clear()


def write_load(url, headers, ledger, stop, prefix, max_requests, seed):
    """Create, update and delete own secrets until ``stop``; record every answer."""
    rng = random.Random(seed)
    session = requests.Session()
    mine = []
    for number in range(max_requests):
        if stop.is_set():
            break
        choice = rng.random()
        value = random_bytes.token_hex(12)
        try:
            if len(mine) < 3 or choice < 0.45:
                key = f"{prefix}_{number}"
                with ledger.lock:
                    ledger.unanswered_creates.add(key)
                response = session.post(url, headers=headers, timeout=15,
                                        json={"secrets": [{"key": key, "value": value}]})
                if response.status_code == 200:
                    secret_id = response.json()[0]["id"]
                    with ledger.lock:
                        ledger.unanswered_creates.discard(key)
                        ledger.acked[secret_id] = value
                    mine.append(secret_id)
            elif choice < 0.85:
                secret_id = rng.choice(mine)
                with ledger.lock:
                    ledger.in_flight[secret_id].add(value)
                response = session.put(url, headers=headers, timeout=15,
                                       json={"secrets": [{"id": secret_id, "value": value}]})
                if response.status_code == 200:
                    with ledger.lock:
                        ledger.in_flight[secret_id].discard(value)
                        ledger.acked[secret_id] = value
            else:
                secret_id = mine.pop(rng.randrange(len(mine)))
                with ledger.lock:
                    ledger.in_flight[secret_id].add(None)
                response = session.delete(url, headers=headers, timeout=15,
                                          json={"secrets": [secret_id]})
                if response.status_code == 200:
                    with ledger.lock:
                        ledger.in_flight[secret_id].discard(None)
                        ledger.acked[secret_id] = None
            with ledger.lock:
                ledger.answers[response.status_code] += 1
        except requests.RequestException:
            with ledger.lock:
                ledger.answers["no answer"] += 1
            if stop.is_set():
                break
    session.close()


def served_state(server, app_row, headers):
    response = requests.get(secrets_url(server, app_row), headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return {s["id"]: (s["key"], s["value"]) for s in response.json()}


def integrity_ok(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(config, owner, demo):
    app_row, _ = demo
    headers = bearer_headers(owner)
    server = LiveServer(config.data_dir)
    ledger = Ledger()
    rng = random.Random(7)
    try:
        for round_number in range(3):
            server.start()
            url = secrets_url(server, app_row)
            stop = threading.Event()
            threads = [
                threading.Thread(target=write_load, args=(
                    url, headers, ledger, stop, f"R{round_number}T{n}", 400, round_number * 10 + n))
                for n in range(4)
            ]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(1.0, 2.0))
            server.stop(signal.SIGKILL)  # mid-load: requests are in flight
            stop.set()
            for thread in threads:
                thread.join(30)
            assert server.process.returncode == -signal.SIGKILL
            assert integrity_ok(config.database)

            server.start()
            present = served_state(server, app_row, headers)
            ledger.state_matches(present)
            ledger.settle(present)
            assert integrity_ok(config.database)
            server.stop()
        assert ledger.answers[200] >= 30, dict(ledger.answers)
        assert not [status for status in ledger.answers
                    if status != "no answer" and status >= 500], dict(ledger.answers)
    finally:
        server.stop()


@pytest.mark.slow
def test_eight_clients_mixed_writes_on_one_environment(config, owner, demo):
    app_row, _ = demo
    headers = bearer_headers(owner)
    server = LiveServer(config.data_dir).start()
    url = secrets_url(server, app_row)
    results = defaultdict(list)  # client -> [(op, status, body text)]
    expected = {}                # id -> (key, value, version)
    lock = threading.Lock()

    def client(number):
        rng = random.Random(number)
        session = requests.Session()
        mine = {}
        for step in range(200):
            choice = rng.random()
            value = random_bytes.token_hex(8)
            if len(mine) < 2 or choice < 0.4:
                key = f"C{number}_{step}"
                response = session.post(url, headers=headers, timeout=30,
                                        json={"secrets": [{"key": key, "value": value}]})
                if response.status_code == 200:
                    mine[response.json()[0]["id"]] = (key, value, 1)
            elif choice < 0.85:
                secret_id = rng.choice(list(mine))
                response = session.put(url, headers=headers, timeout=30,
                                       json={"secrets": [{"id": secret_id, "value": value}]})
                if response.status_code == 200:
                    key, _, version = mine[secret_id]
                    mine[secret_id] = (key, value, version + 1)
                    assert response.json()[0]["version"] == version + 1
            else:
                secret_id = rng.choice(list(mine))
                response = session.delete(url, headers=headers, timeout=30,
                                          json={"secrets": [secret_id]})
                if response.status_code == 200:
                    del mine[secret_id]
            results[number].append((response.status_code, response.text))
        session.close()
        with lock:
            expected.update(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(240)
    elapsed = time.monotonic() - started
    try:
        answers = [answer for client_answers in results.values() for answer in client_answers]
        assert len(answers) == 1600
        assert not [a for a in answers if a[0] >= 500]
        assert not [a for a in answers if "locked" in a[1]]
        assert {status for status, _ in answers} == {200}
        response = requests.get(url, headers=headers, timeout=30)
        served = {s["id"]: (s["key"], s["value"], s["version"]) for s in response.json()}
        assert served == expected
        assert "locked" not in server.log_path.read_text()
        assert integrity_ok(config.database)
        assert elapsed < 240
    finally:
        server.stop()


def _read_only(path, read_only):
    for item in path.iterdir():
        item.chmod(0o444 if read_only else 0o600)
    path.chmod(0o555 if read_only else 0o700)


def test_no_write_fails_once_a_read_only_disk_is_writable_again(config, owner, demo):
    """The data directory made read-only (file modes, obeyed by a server process without
    CAP_DAC_OVERRIDE, as any non-root user does), then writable again: connections opened
    meanwhile are read-only in SQLite, and none of them may fail a write afterwards."""
    import subprocess
    import sys

    from live import REPO, free_port
    from support import without_dac_override

    app_row, _ = demo
    port = free_port()
    env = {**__import__("os").environ, "PHASE_LITE_DATA_DIR": str(config.data_dir),
           "PHASE_LITE_LISTEN": f"127.0.0.1:{port}"}
    log = open(config.data_dir.parent / "ro-server.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "phase_lite.cli", "serve"], env=env,
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=without_dac_override)
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/service/public/v1/secrets/?app_id={app_row['id']}&env=Development"
    headers = bearer_headers(owner)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(base + "/health/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.05)
        assert requests.get(url, headers=headers, timeout=30).status_code == 200  # last use
        _read_only(config.data_dir, True)
        try:
            barrier = threading.Barrier(8)

            def read():
                barrier.wait()
                requests.get(url, headers=headers, timeout=30)

            readers = [threading.Thread(target=read) for _ in range(8)]
            for reader in readers:
                reader.start()
            for reader in readers:
                reader.join()
        finally:
            _read_only(config.data_dir, False)
        statuses = []
        for number in range(8):
            answer = requests.post(url, json={"secrets": [{"key": f"K{number}", "value": "v"}]},
                                   headers=headers, timeout=30)
            statuses.append(answer.status_code)
        assert statuses == [200] * 8
    finally:
        process.terminate()
        process.wait(10)
        log.close()
