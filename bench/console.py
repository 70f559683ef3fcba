"""The web console's app overview: server time to render 3 environments x 100 secrets.

The WSGI app runs in-process (no sockets, no waitress), signed in as the Owner with a console
session, so the figure is phase_lite's own time per page: session check, the domain reads of
three environments and the template.
"""

import re
import statistics
import time
from pathlib import Path

import seed

ENVIRONMENTS = ("Development", "Staging", "Production")
PASSWORD = "bench console password"


def measure_overview(workdir: Path, requests: int = 300) -> dict:
    """{"p50_ms", "p99_ms", "mean_ms", "bytes"} of GETs of the overview page."""
    from phase_lite import accounts
    from phase_lite.app import create_app
    from phase_lite.audit import CLI_META
    from phase_lite.config import load_config
    from phase_lite.console import sessions

    data_dir = workdir / "console"
    owner_email = seed.init_data_dir(data_dir)["ownerEmail"]
    layout = seed.create_bench_app(data_dir, ENVIRONMENTS)
    # The page's own time: no access log line or metrics per request.
    app = create_app(load_config({"PHASE_LITE_DATA_DIR": str(data_dir),
                                  "PHASE_LITE_ACCESS_LOG": "off", "PHASE_LITE_METRICS": "off"}))
    try:
        services = app.extensions["phase_lite"]
        by = accounts.operator(services, "bench")
        owner = accounts.user_by_email(services, by, owner_email)
        sessions.set_password(services.db, owner["id"], PASSWORD, actor=by, meta=CLI_META)
        client = app.test_client()
        auth = {"Authorization": layout.authorization}
        for number, env_name in enumerate(ENVIRONMENTS):
            entries = seed.make_secrets(100, seed=number, references=False)
            answer = client.post(f"/v1/secrets/?app_id={layout.app_id}&env={env_name}",
                                 json={"secrets": entries}, headers=auth)
            assert answer.status_code == 200, answer.status_code
        page = client.get("/console/sign-in").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        answer = client.post("/console/sign-in", data={
            "email": owner_email, "password": PASSWORD, "csrf_token": token})
        assert answer.status_code == 303, answer.status_code
        path = f"/console/apps/{layout.app_id}/"
        body = client.get(path).get_data()
        assert body.count(b"data-key=") == 100, "the overview lists every key once"
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            answer = client.get(path)
            answer.get_data()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        return {"p50_ms": statistics.median(times), "p99_ms": times[int(len(times) * 0.99) - 1],
                "mean_ms": statistics.fmean(times), "bytes": len(body)}
    finally:
        app.extensions["phase_lite"].close()
