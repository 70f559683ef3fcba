"""Lockbox: server time to create a share and open it once (two write transactions).

The WSGI app runs in-process (no sockets, no waitress), as for the console case: each pair is a
``POST /v1/lockbox/`` with the Owner's token (a 1 KiB value's ciphertext) then the anonymous
``GET /v1/lockbox/<id>/`` that counts its one view and deletes the ciphertext, each a durable
commit (SQLite, ``synchronous=FULL``) with its audit events.
"""

import base64
import os
import statistics
import time
from pathlib import Path

import seed


def measure_share_round_trip(workdir: Path, pairs: int = 300) -> dict:
    """{"p50_ms", "p99_ms", "mean_ms"} of a create and an open of one share."""
    from phase_lite.app import create_app
    from phase_lite.config import load_config

    data_dir = workdir / "lockbox"
    owner = seed.init_data_dir(data_dir)
    app = create_app(load_config({"PHASE_LITE_DATA_DIR": str(data_dir),
                                  "PHASE_LITE_ACCESS_LOG": "off", "PHASE_LITE_METRICS": "off"}))
    try:
        client = app.test_client()
        auth = {"Authorization": f"Bearer {owner['bearerToken']}"}
        # Shaped like the browser's: 24-byte nonce, 1 KiB of ciphertext, 16-byte tag.
        body = {"ciphertext": base64.urlsafe_b64encode(os.urandom(24 + 1024 + 16))
                .decode().rstrip("=")}
        times = []
        for _ in range(pairs):
            started = time.perf_counter()
            made = client.post("/v1/lockbox/", json=body, headers=auth)
            opened = client.get(f"/v1{made.json['link']}/")
            times.append((time.perf_counter() - started) * 1000)
            assert made.status_code == 201 and opened.status_code == 200
        times.sort()
        return {"p50_ms": statistics.median(times), "p99_ms": times[int(len(times) * 0.99) - 1],
                "mean_ms": statistics.fmean(times)}
    finally:
        app.extensions["phase_lite"].close()
