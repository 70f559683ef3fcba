"""The container's health check: exit 0 when phase_lite answers GET /health/ with 200.

It asks the port of PHASE_LITE_LISTEN on the loopback address, so a changed port needs no
change here. Standard library only (the image runs it with the venv's Python).
"""

import os
import sys
import urllib.request

port = (os.environ.get("PHASE_LITE_LISTEN") or "127.0.0.1:8080").rsplit(":", 1)[1]
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/", timeout=4) as answer:
        sys.exit(0 if answer.status == 200 else 1)
except OSError as exc:
    print(f"phase_lite is not answering on port {port}: {exc}", file=sys.stderr)
    sys.exit(1)
