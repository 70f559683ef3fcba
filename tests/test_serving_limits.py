"""What the server refuses before the application reads a request: bodies over the limit
(declared or chunked) and oversized headers, answered in Phase's error shape, with no request
body ever written to a temporary file."""

import json
import socket

import pytest

from live import LiveServer

LIMIT = 4096
pytestmark = pytest.mark.slow  # starts server processes


@pytest.fixture
def server(config, owner, tmp_path):
    spool = tmp_path / "tmp"
    spool.mkdir()
    live = LiveServer(config.data_dir, {"PHASE_LITE_MAX_BODY_BYTES": str(LIMIT),
                                        "TMPDIR": str(spool)})
    live.owner, live.spool = owner, spool
    live.start()
    yield live
    live.stop()


def exchange(server, head: bytes, body_parts=(), timeout=10):
    """Send a raw request (head, then body parts while the server reads); return
    (status, headers text, body bytes)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the body was read: what these tests want
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    head_text, _, body = data.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1])
    return status, head_text.decode("latin-1"), body


def request_head(server, extra):
    return (f"POST /v1/apps/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server.owner.bearer_token}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def test_a_declared_oversize_body_is_refused_unread_and_never_spooled(server):
    status, headers, body = exchange(
        server, request_head(server, "Content-Length: 20971520\r\n"),
        [b"x" * 65536] * 32)
    assert (status, json.loads(body)) == (413, {"error": "Request body is too large."})
    assert "application/json" in headers
    assert list(server.spool.iterdir()) == []


def test_an_oversize_chunked_body_is_refused_and_never_spooled(server):
    chunk = b"%x\r\n%s\r\n" % (8192, b"y" * 8192)
    status, _, body = exchange(
        server, request_head(server, "Transfer-Encoding: chunked\r\n"), [chunk] * 64)
    assert (status, json.loads(body)) == (413, {"error": "Request body is too large."})
    assert list(server.spool.iterdir()) == []


def test_a_body_at_the_limit_is_served(server):
    payload = json.dumps({"name": "fits", "description": "d" * (LIMIT - 40)}).encode()
    assert len(payload) <= LIMIT
    status, _, body = exchange(
        server, request_head(server, f"Content-Length: {len(payload)}\r\nConnection: close\r\n"),
        [payload])
    assert status == 201, body
    assert json.loads(body)["name"] == "fits"


def test_oversize_headers_get_the_json_error_shape(server):
    head = (f"GET /v1/apps/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer User {'a' * 300_000}\r\n\r\n").encode()
    status, headers, body = exchange(server, head)
    assert (status, json.loads(body)) == (431, {"error": "Request header fields too large."})
    assert "application/json" in headers
