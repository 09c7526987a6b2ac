"""health.py against real HTTP and HTTPS servers on loopback: the stack's names go to the edge on the host."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from health import check_url

SNI: list[str] = []
"""The server names TLS clients sent."""


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers["Host"]))
        body = b'{"status": "ok",\n "release": "v2"}'
        self.send_response(200 if self.path.startswith("/api/health") else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(context: ssl.SSLContext | None = None) -> Iterator[int]:
    Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_port() -> Iterator[int]:
    yield from serve()


@pytest.fixture
def https_port(tmp_path: Path) -> Iterator[int]:
    """A self-signed certificate, as an edge whose ACME certificate is still on its way might show."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
         "-subj", "/CN=not-the-name", "-keyout", tmp_path / "key.pem", "-out", tmp_path / "cert.pem"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    SNI.clear()
    context.sni_callback = lambda sock, name, ctx: SNI.append(name or "")  # type: ignore[func-returns-value]
    yield from serve(context)


def test_a_stack_hostname_is_asked_of_the_edge_on_this_host(http_port: int) -> None:
    code, answer = check_url(f"http://shop.test:{http_port}/api/health?deep=1", ["shop.test"])
    assert (code, answer) == (200, 'HTTP 200: {"status": "ok", "release": "v2"}')
    assert Recorder.seen == [("/api/health?deep=1", f"shop.test:{http_port}")]


def test_an_error_status_is_returned_with_the_start_of_its_body(http_port: int) -> None:
    assert check_url(f"http://127.0.0.1:{http_port}/other", []) == (503, 'HTTP 503: {"status": "ok", "release": "v2"}')


def test_https_to_a_stack_hostname_sends_its_name_and_accepts_any_certificate(https_port: int) -> None:
    assert check_url(f"https://shop.test:{https_port}/api/health", ["www.shop.test", "shop.test"])[0] == 200
    assert Recorder.seen == [("/api/health", f"shop.test:{https_port}")]
    assert SNI == ["shop.test"]


def test_https_elsewhere_verifies_the_certificate(https_port: int) -> None:
    code, answer = check_url(f"https://127.0.0.1:{https_port}/api/health", ["shop.test"])
    assert code == 0
    assert "CERTIFICATE_VERIFY_FAILED" in answer


def test_nothing_listening_is_no_answer() -> None:
    code, answer = check_url("http://shop.test:9/api/health", ["shop.test"])
    assert code == 0
    assert answer.startswith("no answer: ") and "refused" in answer.lower()
